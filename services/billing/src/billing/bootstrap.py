"""Wires the billing service. It answers /healthz and /readyz and runs its outbox relay;
its domain routes and consumers arrive with their own issue."""

from ailab_runtime.service import ServiceSpec

SPEC = ServiceSpec(
    name="billing",
    title="AI Lab Billing",
    description="Plans, Stripe metered billing, invoices and webhooks (filled in by a later issue).",
)
