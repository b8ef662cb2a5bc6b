"""Adapters: MongoDB collections, Stripe, the usage-meter's HTTP API."""
