"""Pure domain of the agent registry: aggregates, commands, rules and errors (no I/O)."""
