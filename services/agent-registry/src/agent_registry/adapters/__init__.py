"""Adapters: MongoDB read models, the runtime's event store, in-memory fakes for tests."""
