"""The usage-meter's small single-writer documents on real FerretDB/MongoDB: newest-wins limits and
sync status, quota states guarded by sequence, stale monthly quotas, the group watermark."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.support.infra import Infra
from usage_meter.adapters.mongo_store import WATERMARKS, ensure_indexes
from usage_meter.adapters.mongo_views import MongoUsageViews

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.fixture
async def views(infra: Infra) -> AsyncIterator[tuple[MongoUsageViews, Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[f"test_usage_views_{uuid.uuid4().hex[:8]}"]
    await ensure_indexes(db)
    try:
        yield MongoUsageViews(db), db
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_newest_limits_and_sync_reports_win(views: tuple[MongoUsageViews, Any]) -> None:
    v, _ = views
    await v.set_limits("acme", {"max_requests_per_month": 10}, "free", T0)
    await v.set_limits("acme", {"max_requests_per_month": 100}, "pro", T0 + timedelta(minutes=1))
    await v.set_limits("acme", {"max_requests_per_month": 5}, "free", T0)  # late, older: ignored
    assert await v.limits("acme") == {"max_requests_per_month": 100}
    await v.set_sync_status("acme", "2026-11-26", "synced", T0 + timedelta(minutes=2), {})
    await v.set_sync_status("acme", "2026-11-26", "error", T0, {"error": "late report"})
    status = await v.day_status("acme", ["2026-11-26"])
    assert status["2026-11-26"]["sync"]["status"] == "synced"
    assert await v.day_status("globex", ["2026-11-26"]) == {}  # tenant-scoped


async def test_quota_states_keep_the_highest_sequence_and_stale_months_are_found(
    views: tuple[MongoUsageViews, Any],
) -> None:
    v, _ = views
    await v.save_quota_state(
        "t1", "requests", {"sequence": 2, "state": "exceeded", "period": "2026-10", "limit": 1}
    )
    await v.save_quota_state(
        "t1", "requests", {"sequence": 1, "state": "warning", "period": "2026-10", "limit": 1}
    )
    await v.save_quota_state(
        "t2", "requests", {"sequence": 1, "state": "exceeded", "period": "2026-11", "limit": 1}
    )
    await v.save_quota_state(
        "t3", "storage", {"sequence": 1, "state": "warning", "period": "current", "limit": 1}
    )
    assert (await v.quota_states("t1"))["requests"]["sequence"] == 2
    assert await v.stale_quota_tenants("2026-11") == ["t1"]


async def test_watermark_needs_every_partition(views: tuple[MongoUsageViews, Any]) -> None:
    v, db = views
    await db[WATERMARKS].insert_one({"_id": "g|0", "group": "g", "wm": T0, "partitions": 2})
    assert await v.watermark("g") is None
    await db[WATERMARKS].insert_one(
        {"_id": "g|1", "group": "g", "wm": T0 - timedelta(seconds=5), "partitions": 2}
    )
    assert await v.watermark("g") == T0 - timedelta(seconds=5)


async def test_retention_deletes_old_ledger_entries_and_keeps_aggregates(
    views: tuple[MongoUsageViews, Any],
) -> None:
    v, db = views
    old, recent = T0 - timedelta(days=91), T0 - timedelta(days=89)
    await db["usage_ledger"].insert_many(
        [{"_id": "old", "tenant_id": "acme", "ts": old}, {"_id": "new", "tenant_id": "acme", "ts": recent}]
    )
    await db["usage_aggregates"].insert_one({"_id": "d|acme|2026-08-28|requests", "tenant_id": "acme"})
    assert await v.expire(T0 - timedelta(days=90)) == 1
    assert [d["_id"] async for d in db["usage_ledger"].find({})] == ["new"]
    assert await db["usage_aggregates"].count_documents({}) == 1
