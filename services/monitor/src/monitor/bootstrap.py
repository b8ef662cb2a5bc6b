"""Wires the monitor service. It answers /healthz and /readyz and runs its outbox relay;
its domain routes and consumers arrive with their own issue."""

from ailab_runtime.service import ServiceSpec

SPEC = ServiceSpec(
    name="monitor",
    title="AI Lab Monitor",
    description="Monitors, alert rules and notifications (filled in by a later issue).",
)
