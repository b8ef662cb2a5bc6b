"""Pure billing model: plan configuration and rating (no I/O)."""
