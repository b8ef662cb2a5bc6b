"""Small-volume consumers (per-event, via the runtime's IdempotentConsumer): tenant plan limits from
tenancy and billing events, and billing's Stripe sync status of closed days. The high-volume usage
topic has its own batch consumer (adapters/kafka_usage.py)."""

from __future__ import annotations

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_contracts.events.billing import PlanChanged, UsageSyncStatusChanged
from ailab_contracts.events.tenancy import TenantCreated, TenantUpdated
from ailab_contracts.topics import BILLING, TENANCY
from ailab_runtime.consumer import Handler
from ailab_runtime.service import ConsumerSpec, Runtime

from ..wiring import UsageMeterServices


def _handler(runtime: Runtime) -> Handler:
    async def handle(envelope: EventEnvelope, event: BaseModel) -> None:
        services: UsageMeterServices = runtime.extras["usage"]
        views = services.views
        if isinstance(event, TenantCreated | TenantUpdated | PlanChanged):
            if event.limits is None:
                return  # a tenant update that leaves the limits alone
            plan = getattr(event, "plan", None)
            await views.set_limits(event.tenant_id, event.limits.model_dump(), plan, envelope.occurred_at)
            await services.quotas.mark({event.tenant_id})
        elif isinstance(event, UsageSyncStatusChanged):
            await views.set_sync_status(
                event.tenant_id,
                event.day,
                event.status,
                event.at,
                {"meters": list(event.meters), "error": event.error, "attempts": event.attempts},
            )

    return handle


PLANS_CONSUMER = ConsumerSpec(
    topics=[TENANCY, BILLING],
    group="usage-meter.plans",
    handler_factory=_handler,
    event_types={
        "tenancy.TenantCreated",
        "tenancy.TenantUpdated",
        "billing.PlanChanged",
        "billing.UsageSyncStatusChanged",
    },
)
CONSUMERS = [PLANS_CONSUMER]
