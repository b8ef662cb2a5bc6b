"""The gateway's quota projection on the real MongoDB-wire server: latest sequence wins under
redelivery and reordering, and only a current month's exceeded hard quota blocks work."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts.events.usage import QuotaStateChanged
from gateway.application.quotas import QuotaBook

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
RESET = datetime(2026, 12, 1, tzinfo=UTC)


def change(
    seq: int, state: str, *, quota: str = "requests", period: str = "2026-11", limit: int = 1000
) -> QuotaStateChanged:
    used = {"ok": "10", "warning": "800", "exceeded": "1000"}[state]
    return QuotaStateChanged(
        tenant_id="acme",
        quota=quota,  # type: ignore[arg-type]
        period=period,
        limit=limit,
        used=Decimal(used),
        state=state,  # type: ignore[arg-type]
        previous_state="ok",
        threshold_pct={"ok": 0, "warning": 80, "exceeded": 100}[state],
        resets_at=RESET,
        sequence=seq,
    )


async def test_latest_sequence_wins_whatever_the_delivery_order(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    book = QuotaBook(mongo_db)
    await book.apply(change(2, "exceeded"))
    await book.apply(change(1, "warning"))  # late, older: ignored
    await book.apply(change(2, "exceeded"))  # redelivered: no change
    states = await book.states("acme")
    assert [(s["quota"], s["state"], s["sequence"]) for s in states] == [("requests", "exceeded", 2)]

    exceeded = await book.exceeded("acme", NOW)
    assert exceeded is not None and exceeded.quota == "requests" and exceeded.used == "1000"
    error = exceeded.error(NOW)
    assert error.status == 429 and error.code == "quota_exceeded"
    assert error.details == {
        "meter": "requests",
        "limit": 1000,
        "used": "1000",
        "period": "2026-11",
        "resets_at": "2026-12-01T00:00:00+00:00",
    }
    assert error.headers == {"Retry-After": str(int((RESET - NOW).total_seconds()))}

    await book.apply(change(3, "ok"))  # e.g. the limit was raised
    assert await book.exceeded("acme", NOW) is None


async def test_only_current_hard_quotas_block(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    book = QuotaBook(mongo_db)
    await book.apply(change(1, "exceeded", period="2026-10"))  # last month: over
    await book.apply(change(1, "exceeded", quota="storage", period="current"))  # not a hard quota for runs
    await book.apply(change(1, "warning", quota="tokens"))
    assert await book.exceeded("acme", NOW) is None
    assert await book.exceeded("other-tenant", NOW) is None

    await book.apply(change(2, "exceeded", quota="tokens"))
    blocked = await book.exceeded("acme", NOW)
    assert blocked is not None and blocked.quota == "tokens"
    storage = await book.exceeded("acme", NOW, ("storage",))  # what stops uploads
    assert storage is not None and storage.period == "current"
    assert storage.error(NOW).message == "storage quota of the plan is used up (1000 of 1000)"
