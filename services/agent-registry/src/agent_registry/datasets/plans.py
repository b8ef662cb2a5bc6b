"""The plan of each tenant, learnt from `ailab.tenancy.events`, which sets its upload size limit.

`tenant_plans` holds one document per tenant (`_id` = tenant id, `plan`, `_version` = the version of
the tenant's stream `tenant:{id}` it reflects). The consumer is the only writer and Kafka gives it
each tenant's events in order (key = tenant id, one consumer per partition), and an update applies
only past the stored version, so redeliveries and replays are no-ops.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import EventEnvelope
from ailab_contracts.events.tenancy import TenantCreated, TenantUpdated
from ailab_contracts.topics import TENANCY
from ailab_runtime.consumer import Handler
from ailab_runtime.service import ConsumerSpec, Runtime
from ailab_runtime.views import apply_versioned

log = logging.getLogger(__name__)

TENANT_PLANS = "tenant_plans"
CONSUMER_GROUP = "agent-registry.tenant-plans"
EVENT_TYPES = {"tenancy.TenantCreated", "tenancy.TenantUpdated"}

Db = AsyncDatabase[dict[str, Any]]


class TenantPlans:
    def __init__(self, db: Db) -> None:
        self._col = db[TENANT_PLANS]

    async def plan(self, tenant_id: str) -> str | None:
        """The tenant's plan, or None if no tenancy event about it has arrived yet."""
        doc = await self._col.find_one({"_id": tenant_id}, {"plan": 1})
        plan = doc.get("plan") if doc else None
        return plan if isinstance(plan, str) else None

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if not isinstance(event, TenantCreated | TenantUpdated):
            return
        if event.tenant_id != envelope.tenant_id:
            log.error("tenancy event about another tenant than its envelope; ignored")
            return
        fields: dict[str, Any] = {"tenant_id": event.tenant_id, "updated_at": envelope.occurred_at}
        if event.plan is not None:
            fields["plan"] = event.plan
        await apply_versioned(self._col, event.tenant_id, envelope.stream_version, fields)


def plan_handler(runtime: Runtime) -> Handler:
    return TenantPlans(runtime.db).apply


TENANT_PLANS_CONSUMER = ConsumerSpec(
    topics=[TENANCY],
    group=CONSUMER_GROUP,
    handler_factory=plan_handler,
    event_types=EVENT_TYPES,
)
