"""The gateway's projection of quota state (`usage.QuotaStateChanged` from the usage-meter), and the
check that refuses new work on a tenant that has used up a hard monthly limit.

The usage-meter decides when a threshold is crossed; the gateway only keeps the latest state per
tenant and quota (the event with the highest `sequence` wins, so redelivery and reordering change
nothing) and answers 429 `quota_exceeded` before a run or experiment reaches a provider.
A monthly state belongs to its period: once the month is over it no longer blocks anything, even
before the usage-meter reports the reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_contracts.events.usage import QuotaStateChanged
from ailab_runtime.consumer import Handler
from ailab_runtime.errors import ApiError

# Quotas whose exhaustion stops new provider work, and the one that stops new uploads (users and
# projects are checked where those are created).
PROVIDER_WORK_QUOTAS = ("requests", "tokens")
STORAGE_QUOTAS = ("storage",)


@dataclass(frozen=True)
class ExceededQuota:
    quota: str
    limit: int
    used: str
    period: str
    resets_at: datetime | None

    def error(self, now: datetime) -> ApiError:
        retry_after = max(1, math.ceil((self.resets_at - now).total_seconds())) if self.resets_at else 3600
        return ApiError(
            429,
            "quota_exceeded",
            f"{'monthly ' if self.period != 'current' else ''}{self.quota} quota of the plan is used up "
            f"({self.used} of {self.limit})",
            {
                "meter": self.quota,
                "limit": self.limit,
                "used": self.used,
                "period": self.period,
                "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            },
            headers={"Retry-After": str(retry_after)},
        )


class QuotaBook:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._states = db["quota_states"]

    async def apply(self, event: QuotaStateChanged) -> None:
        doc = {
            "tenant_id": event.tenant_id,
            "quota": event.quota,
            "period": event.period,
            "limit": event.limit,
            "used": format(event.used, "f"),
            "state": event.state,
            "threshold_pct": event.threshold_pct,
            "resets_at": event.resets_at,
            "sequence": event.sequence,
        }
        key = f"{event.tenant_id}:{event.quota}"
        try:
            # The consumer is this collection's only writer; an older sequence matches nothing and
            # its upsert collides with the newer document: it is ignored.
            await self._states.replace_one(
                {"_id": key, "sequence": {"$lt": event.sequence}}, {"_id": key, **doc}, upsert=True
            )
        except DuplicateKeyError:
            pass

    async def states(self, tenant_id: str) -> list[dict[str, Any]]:
        return [doc async for doc in self._states.find({"tenant_id": tenant_id}).sort("_id", 1)]

    async def exceeded(
        self, tenant_id: str, now: datetime, quotas: tuple[str, ...] = PROVIDER_WORK_QUOTAS
    ) -> ExceededQuota | None:
        """The first of `quotas` the tenant has used up (a monthly one: in the current month)."""
        current_month = now.strftime("%Y-%m")
        cursor = self._states.find(
            {"tenant_id": tenant_id, "quota": {"$in": list(quotas)}, "state": "exceeded"}
        )
        async for doc in cursor:
            if doc["limit"] < 0 or doc["period"] not in (current_month, "current"):
                continue  # unlimited, or a month that is over
            return ExceededQuota(
                quota=doc["quota"],
                limit=doc["limit"],
                used=doc["used"],
                period=doc["period"],
                resets_at=doc.get("resets_at"),
            )
        return None

    def handler(self) -> Handler:
        async def handle(envelope: EventEnvelope, event: BaseModel) -> None:
            if isinstance(event, QuotaStateChanged):
                await self.apply(event)

        return handle
