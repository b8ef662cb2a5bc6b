"""Adapters behind the ports: MongoDB views and ledgers, the runtime's event store, env secrets."""
