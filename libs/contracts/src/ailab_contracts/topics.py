"""Kafka topic names: one per producing context, and a dead-letter topic each."""

TENANCY = "ailab.tenancy.events"
REGISTRY = "ailab.registry.events"
RUNS = "ailab.runs.events"
USAGE = "ailab.usage.events"
BILLING = "ailab.billing.events"
TOOLSET = "ailab.toolset.events"
MONITOR = "ailab.monitor.events"

ALL = (TENANCY, REGISTRY, RUNS, USAGE, BILLING, TOOLSET, MONITOR)


def dlq(topic: str) -> str:
    return f"{topic}.dlq"
