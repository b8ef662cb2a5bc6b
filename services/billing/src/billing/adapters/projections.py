"""Read models of billing's own streams: `accounts` (billing-account:{tenant}) and `usage_sync`
(usage-sync:{tenant}:{day}); version-guarded, so re-applying is harmless."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import EventEnvelope
from ailab_contracts.events.billing import AccountStatusChanged, PlanChanged, UsageSyncStatusChanged
from ailab_runtime.mongo_server import delete_matching
from ailab_runtime.views import apply_versioned

from .mongo_billing import ACCOUNTS, SYNC


class AccountsProjection:
    name = ACCOUNTS

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[ACCOUNTS]

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        on_insert = {"tenant_id": envelope.tenant_id, "status": "active", "created_at": envelope.occurred_at}
        if isinstance(event, PlanChanged):
            fields: dict[str, Any] = {
                "plan": event.plan,
                "previous_plan": event.previous_plan,
                "plan_version": event.plan_version,
                "limits": event.limits.model_dump(mode="json"),
                "base_price_usd": format(event.base_price_usd, "f"),
                "plan_changed_at": event.effective_at,
                "plan_changed_by": event.changed_by,
            }
        elif isinstance(event, AccountStatusChanged):
            on_insert.pop("status")
            fields = {"status": event.status, "status_reason": event.reason, "status_changed_at": event.at}
        else:
            return
        await apply_versioned(self._col, envelope.tenant_id, envelope.stream_version, fields, on_insert)

    async def reset(self) -> None:
        await delete_matching(self._col, {})


class SyncProjection:
    name = SYNC

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[SYNC]

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if not isinstance(event, UsageSyncStatusChanged):
            return
        fields = {
            "status": event.status,
            "attempts": event.attempts,
            "meters": list(event.meters),
            "error": event.error,
            "at": event.at,
        }
        on_insert = {"tenant_id": event.tenant_id, "day": event.day, "month": event.day[:7]}
        await apply_versioned(
            self._col, f"{event.tenant_id}:{event.day}", envelope.stream_version, fields, on_insert
        )

    async def reset(self) -> None:
        await delete_matching(self._col, {})
