"""Applies the billing service's decisions to tenants: a plan change sets the tenant's plan and
limits, an account status change suspends or restores it. Both become ordinary
`tenancy.TenantUpdated` events of the gateway (actor `billing`), so every other service follows.

Redelivery is harmless: a change the tenant already reflects records nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_contracts.events.billing import AccountStatusChanged, PlanChanged
from ailab_runtime.consumer import Handler

from .tenancy import TenancyService

BILLING_ACTOR = "billing"


def billing_events_handler(tenancy: TenancyService) -> Handler:
    async def handle(envelope: EventEnvelope, event: BaseModel) -> None:
        changes: dict[str, Any] = {}
        tenant = await tenancy.get_tenant(envelope.tenant_id)
        if tenant is None:
            return  # a tenant this gateway never created: nothing to change
        if isinstance(event, PlanChanged):
            limits = event.limits.model_dump()
            if tenant.get("plan") != event.plan or tenant.get("limits") != limits:
                changes = {"plan": event.plan, "limits": event.limits}
        elif isinstance(event, AccountStatusChanged):
            if tenant.get("status") != event.status:
                changes = {"status": event.status}
        if changes:
            # No If-Match: billing's decision wins over concurrent edits; a version conflict is
            # retried by the consumer.
            await tenancy.update_tenant(envelope.tenant_id, changes, actor=BILLING_ACTOR, if_match=None)

    return handle
