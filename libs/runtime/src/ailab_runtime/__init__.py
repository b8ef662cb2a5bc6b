"""Shared runtime of AI Lab services."""

from ailab_contracts import topics as _topics


def topics_for_prefix(prefix: str) -> list[str]:
    """Every context topic and its dead-letter topic, with the deployment's prefix."""
    return [f"{prefix}{t}" for t in _topics.ALL] + [f"{prefix}{_topics.dlq(t)}" for t in _topics.ALL]
