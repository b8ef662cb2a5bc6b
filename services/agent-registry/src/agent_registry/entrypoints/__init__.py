"""Entry points of the registry: the internal HTTP API the gateway forwards to."""
