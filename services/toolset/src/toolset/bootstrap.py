"""Wires the toolset service. It answers /healthz and /readyz and runs its outbox relay;
its domain routes and consumers arrive with their own issue."""

from ailab_runtime.service import ServiceSpec

SPEC = ServiceSpec(
    name="toolset",
    title="AI Lab Toolset",
    description="Linting, rule generation, debug sessions and traces (filled in by a later issue).",
)
