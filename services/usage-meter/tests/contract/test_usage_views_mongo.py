"""The usage-meter's small single-writer documents on real FerretDB/MongoDB: newest-wins limits and
sync status, quota states guarded by sequence, stale monthly quotas, the group watermark; the
ledger's export (owned payloads, ordered) and retention."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.support.infra import Infra
from usage_meter.adapters.mongo_store import (
    AGGREGATES,
    LEGACY_AGGREGATES,
    WATERMARKS,
    MongoUsageStore,
    ensure_indexes,
    migrate_legacy_aggregates,
    migrate_legacy_ledger,
)
from usage_meter.adapters.mongo_views import MongoUsageViews
from usage_meter.application.ingest import UsageIngestor, load_aggregates
from usage_meter.domain.model import Aggregate, Delivery, QuotaUsage, Sheet, UsageEntry, comparable

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


def usage(n: int, at: datetime, tenant: str = "acme") -> UsageEntry:
    payload = {
        "tenant_id": tenant,
        "user_id": "u1",
        "meter": "requests",
        "quantity": "1",
        "provider": "openai",
        "request_id": f"req_{n}",
        "timestamp": at.isoformat(),
        "dimensions": {"endpoint": "/chat"},
    }
    return UsageEntry(
        event_id=f"ev-{n}",
        tenant_id=tenant,
        user_id="u1",
        meter="requests",
        quantity=Decimal(1),
        cost=None,
        timestamp=at,
        provider="openai",
        payload=payload,
    )


async def claim_and_store(store: MongoUsageStore, deliveries: list[Delivery]) -> None:
    """The ledger stage and the payloads of what it claimed, as the consumer runs them."""
    claimed = await UsageIngestor(store, day_close_after=timedelta(hours=1)).claim(deliveries)
    await store.store_payloads(claimed.effective)


async def test_export_reads_the_owned_payloads_by_time_then_id(views: tuple[MongoUsageViews, Any]) -> None:
    v, db = views
    store = MongoUsageStore(db)
    day2 = T0 + timedelta(days=1)
    # A batch record with events on two days, a single-event record, and a duplicate from a retry.
    await claim_and_store(store, [Delivery(0, 5, usage(3, day2)), Delivery(0, 5, usage(2, T0))])
    await claim_and_store(
        store, [Delivery(1, 7, usage(1, T0, tenant="globex")), Delivery(0, 6, usage(4, T0))]
    )
    await claim_and_store(store, [Delivery(0, 8, usage(2, T0))])  # retry of ev-2: not exported twice
    rows = [r async for r in v.ledger(None, T0, day2 + timedelta(hours=1))]
    assert [r["event_id"] for r in rows] == ["ev-1", "ev-2", "ev-4", "ev-3"]
    assert rows[1]["dimensions"] == {"endpoint": "/chat"} and rows[1]["request_id"] == "req_2"
    acme = [r["event_id"] async for r in v.ledger("acme", T0, day2)]
    assert acme == ["ev-2", "ev-4"]


async def test_export_reads_timestamps_stored_in_any_form_the_model_accepts(
    views: tuple[MongoUsageViews, Any],
) -> None:
    """The bulk API once stored events as sent, including unix seconds (as a number or as text):
    export still orders and filters them by their time."""
    v, db = views
    store = MongoUsageStore(db)
    unix, as_text, iso = (
        usage(1, T0),
        usage(2, T0 + timedelta(minutes=1)),
        usage(3, T0 + timedelta(minutes=2)),
    )
    assert isinstance(unix.payload, dict) and isinstance(as_text.payload, dict)
    unix.payload["timestamp"] = int(unix.timestamp.timestamp())
    as_text.payload["timestamp"] = str(int(as_text.timestamp.timestamp()))
    await claim_and_store(store, [Delivery(0, 1, e) for e in (iso, as_text, unix)])
    rows = [r async for r in v.ledger("acme", T0, T0 + timedelta(minutes=2))]
    assert [r["event_id"] for r in rows] == ["ev-1", "ev-2"]


async def test_retention_deletes_old_ledger_entries_and_keeps_aggregates(
    views: tuple[MongoUsageViews, Any],
) -> None:
    v, db = views
    store = MongoUsageStore(db)
    old, recent = T0 - timedelta(days=91), T0 - timedelta(days=89)
    await claim_and_store(store, [Delivery(0, 1, usage(1, old)), Delivery(0, 2, usage(2, recent))])
    await db[AGGREGATES].insert_one({"_id": "d|acme|2026-08-28", "tenant_id": "acme", "meters": {}, "v": 1})
    members = {
        f"d|acme|{old.date()}|requests|u|u1": "gone",
        f"m|acme|{old.strftime('%Y-%m')}|requests|u|u1": "gone",  # that month ended before the cutoff
        f"d|acme|{recent.date()}|requests|u|u1": "kept",
        f"m|acme|{recent.strftime('%Y-%m')}|requests|u|u1": "kept",
        "t|acme|all|storage_mb|u|u1": "kept",  # running totals never end
    }
    await store.claim_members({key: ("acme", (0, 1)) for key in members})
    assert await v.expire(T0 - timedelta(days=90)) == 1
    assert [d["_id"] async for d in db["usage_ledger"].find({})] == ["ev-2"]
    assert {d["_id"] async for d in db["usage_members"].find({})} == {
        k for k, w in members.items() if w == "kept"
    }
    assert [r["event_id"] async for r in v.ledger("acme", old, T0)] == ["ev-2"]
    assert await db[AGGREGATES].count_documents({}) == 1
    # Forgotten after retention: the same id would count again (the window the API documents).
    assert await store.claim_ledger([Delivery(0, 3, usage(1, old))]) == {"ev-1": (0, 3)}


async def test_retention_deletes_a_day_of_more_entries_than_one_delete_command_may_on_ferretdb(
    views: tuple[MongoUsageViews, Any],
) -> None:
    """66,000 entries of an expired day: FerretDB 1.24 refuses to delete more than 65,535 documents
    in one command, and retention used to fail there for good; it now deletes them in rounds."""
    v, db = views
    old_day = (T0 - timedelta(days=91)).date().isoformat()
    entries = [{"_id": f"ev-{n}", "s": f"{old_day}|{n % 3}|{n // 3000}"} for n in range(66_000)]
    for start in range(0, len(entries), 11_000):
        await db["usage_ledger"].insert_many(entries[start : start + 11_000])
    await db["usage_ledger"].insert_one({"_id": "ev-recent", "s": f"{T0.date().isoformat()}|0|1"})
    assert await v.expire(T0 - timedelta(days=90)) == 66_000
    assert [d["_id"] async for d in db["usage_ledger"].find({})] == ["ev-recent"]


async def test_entries_stored_before_the_split_are_exported_and_expired(
    views: tuple[MongoUsageViews, Any],
) -> None:
    """A database written by the earlier ledger (one document per event with its envelope, two
    indexes): the start-up migration copies the payloads into chunks once and drops the indexes;
    retention deletes the old entries by their timestamp."""
    v, db = views
    await db["usage_ledger"].create_index([("tenant_id", 1), ("ts", 1)])
    await db["usage_ledger"].create_index("ts")
    old, recent = T0 - timedelta(days=91), T0 - timedelta(days=1)
    legacy = []
    for n, at in ((1, old), (2, recent)):
        envelope = {"event_id": f"ev-{n}", "payload": {**usage(n, at).payload, "request_id": f"legacy_{n}"}}  # type: ignore[dict-item]
        legacy.append(
            {
                "_id": f"ev-{n}",
                "tenant_id": "acme",
                "ts": at,
                "p": 0,
                "o": n,
                "at": at,
                "raw": json.dumps(envelope),
            }
        )
    await db["usage_ledger"].insert_many(legacy)
    await ensure_indexes(db)
    assert set(await db["usage_ledger"].index_information()) == {"_id_"}
    assert await migrate_legacy_ledger(db) == 2
    assert await migrate_legacy_ledger(db) == 0  # once
    rows = [r async for r in v.ledger("acme", old, T0)]
    assert [(r["event_id"], r["request_id"]) for r in rows] == [("ev-1", "legacy_1"), ("ev-2", "legacy_2")]
    # Still dedupes: a new delivery of ev-2 is a duplicate.
    assert await MongoUsageStore(db).claim_ledger([Delivery(0, 9, usage(2, recent))]) == {}
    # The record that stored ev-2, redelivered (its marker present): it still owns it, whichever
    # way the owners are read back.
    await db["usage_ledger_records"].insert_one({"_id": "0|2", "at": T0})
    for reads in ("by_id", "by_record"):
        store = MongoUsageStore(db, owner_reads=reads)
        assert await store.claim_ledger([Delivery(0, 2, usage(2, recent))]) == {"ev-2": (0, 2)}, reads
    assert await v.expire(T0 - timedelta(days=90)) == 1
    assert [r["event_id"] async for r in v.ledger("acme", old, T0)] == ["ev-2"]


def metered(n: int, tenant: str, meter: str, quantity: int) -> UsageEntry:
    return UsageEntry(
        event_id=f"ev-{tenant}-{n}",
        tenant_id=tenant,
        user_id=f"u{n % 2}",
        meter=meter,
        quantity=Decimal(quantity),
        cost=Decimal("0.5"),
        timestamp=T0,
        provider="openai",
        model="gpt-4.1",
    )


async def test_the_read_side_sees_one_document_per_meter_of_each_sheet(
    views: tuple[MongoUsageViews, Any],
) -> None:
    v, db = views
    ingestor = UsageIngestor(MongoUsageStore(db), day_close_after=timedelta(hours=1))
    batch = [
        Delivery(0, 1, metered(1, "acme", "tokens_in", 10)),
        Delivery(0, 1, metered(2, "acme", "tokens_out", 4)),
        Delivery(0, 1, metered(3, "acme", "storage_mb", 7)),
        Delivery(0, 2, metered(4, "globex", "tokens_in", 99)),
    ]
    applied = await ingestor.apply(batch)
    day = T0.date().isoformat()
    docs = await v.aggregates("acme", "d", day, day)
    assert [(d["_id"], d["period"], d["meter"], d["quantity"]) for d in docs] == [
        (f"d|acme|{day}|storage_mb", day, "storage_mb", "7"),
        (f"d|acme|{day}|tokens_in", day, "tokens_in", "10"),
        (f"d|acme|{day}|tokens_out", day, "tokens_out", "4"),
    ]
    assert [d["meter"] for d in await v.aggregates("acme", "m", "2026-11", "2026-11", "tokens_out")] == [
        "tokens_out"
    ]
    assert await v.aggregates("acme", "d", "2026-11-28", "2026-11-30") == []
    month = T0.strftime("%Y-%m")
    usage = await v.quota_usage("acme", month)
    assert {sheet: (u.version, u.used) for sheet, u in usage.items()} == {
        f"m|acme|{month}": (1, {"tokens": Decimal(14), "storage": Decimal(7)}),
        "t|acme|all": (1, {"storage": Decimal(7)}),
    }
    assert await v.quota_usage("initech", month) == {}
    # What the consumer hands quota evaluation after the batch is what a read gives (no day sheets).
    assert applied.quota_usage == {**usage, f"m|globex|{month}": QuotaUsage(1, {"tokens": Decimal(99)})}
    # Redelivered after its sheets were stored (its first delivery may have failed before reaching
    # quota evaluation): nothing written, the same sheets handed over.
    again = await ingestor.apply(batch)
    assert (again.documents, again.quota_usage) == (0, applied.quota_usage)


async def test_per_meter_aggregates_stored_before_sheets_are_copied_once(
    views: tuple[MongoUsageViews, Any],
) -> None:
    """A database written before sheets keeps one document per tenant × period × meter: on start
    they are copied into sheets, which the read side and the consumer then use as they were."""
    v, db = views
    legacy: dict[str, Aggregate] = {}
    entries = [
        metered(1, "acme", "tokens_in", 10),
        metered(2, "acme", "tokens_out", 4),
        metered(3, "acme", "storage_mb", 7),
        metered(4, "globex", "tokens_in", 99),
    ]
    for n, e in enumerate(entries):
        for agg_id in (f"d|{e.tenant_id}|{e.day}|{e.meter}", f"m|{e.tenant_id}|{e.month}|{e.meter}"):
            legacy.setdefault(agg_id, Aggregate(agg_id)).add(e, (0, n), ["unique_users"])
    legacy["t|acme|all|storage_mb"] = Aggregate("t|acme|all|storage_mb")
    legacy["t|acme|all|storage_mb"].add(entries[2], (0, 2))
    await db[LEGACY_AGGREGATES].insert_many([{**a.to_doc(), "v": 3} for a in legacy.values()])
    # An earlier run was interrupted after writing one sheet, which a consumer then changed: it is
    # left as it is.
    first = "d|globex|2026-11-27|tokens_in"
    early = Sheet("d|globex|2026-11-27", {first: legacy[first].copy()}, version=2)
    early.aggregates[first].add(metered(8, "globex", "tokens_in", 1), (1, 5))
    await db[AGGREGATES].insert_one(early.to_doc())

    assert len(legacy) == 9
    assert await migrate_legacy_aggregates(db) == 8  # all but the one in the sheet found stored
    assert await migrate_legacy_aggregates(db) == 0  # once per database
    assert await db[AGGREGATES].count_documents({}) == 5
    stored = await load_aggregates(MongoUsageStore(db), list(legacy))
    expected = {**legacy, first: early.aggregates[first]}
    assert {i: (comparable(a), a.positions) for i, a in stored.items()} == {
        i: (comparable(a), a.positions) for i, a in expected.items()
    }
    assert stored[first].positions == {0: 3, 1: 5}
    assert (await MongoUsageStore(db).load_sheets([early.id]))[early.id].version == 2
    docs = await v.aggregates("acme", "m", "2026-11", "2026-11")
    assert [(d["meter"], d["quantity"], d["unique_users"]) for d in docs] == [
        ("storage_mb", "7", 1),
        ("tokens_in", "10", 1),
        ("tokens_out", "4", 1),
    ]
    assert (await v.quota_usage("acme", "2026-11"))["t|acme|all"].used == {"storage": Decimal(7)}
    # The consumer goes on from the copied positions: an event already in counts once, a new one adds.
    ingestor = UsageIngestor(MongoUsageStore(db), day_close_after=timedelta(hours=1))
    await ingestor.apply([Delivery(0, 1, entries[1]), Delivery(0, 9, metered(9, "acme", "tokens_out", 5))])
    tokens_out = (await v.aggregates("acme", "d", "2026-11-27", "2026-11-27", "tokens_out"))[0]
    assert (tokens_out["quantity"], tokens_out["events"]) == ("9", 2)


async def test_a_per_meter_aggregate_written_after_the_copy_is_reported(
    views: tuple[MongoUsageViews, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A consumer of the version before sheets that kept running after the copy: its write is not
    in the sheets, and every start says so."""
    _, db = views
    assert await migrate_legacy_aggregates(db) == 0
    with caplog.at_level("ERROR"):
        assert await migrate_legacy_aggregates(db) == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    late = Aggregate("d|acme|2026-11-27|requests")
    late.add(metered(1, "acme", "requests", 1), (0, 1))
    await db[LEGACY_AGGREGATES].insert_one({**late.to_doc(), "v": 1, "updated_at": datetime.now(UTC)})
    with caplog.at_level("ERROR"):
        assert await migrate_legacy_aggregates(db) == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "not counted" in errors[0].getMessage()
