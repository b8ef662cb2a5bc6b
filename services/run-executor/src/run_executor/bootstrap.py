"""Wires the run-executor service. It answers /healthz and /readyz and runs its outbox relay;
its domain routes and consumers arrive with their own issue."""

from ailab_runtime.service import ServiceSpec

SPEC = ServiceSpec(
    name="run-executor",
    title="AI Lab Run executor",
    description="Executes agent runs and experiments against LLM providers (filled in by a later issue).",
)
