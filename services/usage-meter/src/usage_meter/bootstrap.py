"""Wires the usage-meter service. It answers /healthz and /readyz and runs its outbox relay;
its domain routes and consumers arrive with their own issue."""

from ailab_runtime.service import ServiceSpec

SPEC = ServiceSpec(
    name="usage-meter",
    title="AI Lab Usage meter",
    description="Usage ledger, aggregates and quotas (filled in by a later issue).",
)
