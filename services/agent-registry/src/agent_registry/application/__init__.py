"""Use cases of the registry: command handlers and queries over narrow ports."""
