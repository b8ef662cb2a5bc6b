"""One contract for the UsageStore port, run against the in-memory fake (unit) and against
MongoUsageStore on real FerretDB/MongoDB (integration), plus the ingestor's crash window on the real
adapter: a batch that dies after its ledger insert is completed exactly once by its redelivery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError

from tests.support.infra import Infra
from usage_meter.adapters.memory_store import InMemoryUsageStore
from usage_meter.adapters.mongo_store import (
    MongoUsageStore,
    _insert_new_concurrently,
    chunk_rows,
    ensure_indexes,
)
from usage_meter.application.ingest import CrashForTest, UsageIngestor, load_aggregates
from usage_meter.application.ports import UsageStore
from usage_meter.domain.model import Aggregate, Delivery, Sheet, UsageEntry, comparable, recompute

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def entry(n: int, tenant: str = "acme", user: str = "u1", meter: str = "tokens_in") -> UsageEntry:
    return UsageEntry(
        event_id=f"ev-{n}",
        tenant_id=tenant,
        user_id=user,
        meter=meter,
        quantity=Decimal(n),
        cost=Decimal("0.001"),
        timestamp=NOW,
        provider="openai",
        model="gpt-4.1",
        project_id="p1",
    )


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("mongo", marks=pytest.mark.integration),
        # Owners read back by `$in` on `_id` (what "auto" picks on MongoDB; on FerretDB it reads by
        # record): both ways on the real server.
        pytest.param("mongo_by_id", marks=pytest.mark.integration),
    ]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[UsageStore]:
    if request.param == "memory":
        yield InMemoryUsageStore()
        return
    infra: Infra = request.getfixturevalue("infra")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[f"test_usage_store_{uuid.uuid4().hex[:8]}"]
    await ensure_indexes(db)
    try:
        yield MongoUsageStore(db, owner_reads="by_id" if request.param == "mongo_by_id" else "auto")
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_ledger_claim_returns_the_owning_stamp_of_each_event(store: UsageStore) -> None:
    first = [Delivery(0, 1, entry(1)), Delivery(0, 2, entry(2)), Delivery(0, 3, entry(1))]
    assert await store.claim_ledger(first) == {"ev-1": (0, 1), "ev-2": (0, 2)}
    # (0, 2) redelivered owns ev-2 still; ev-1 again from another record is a duplicate: absent.
    again = [Delivery(0, 2, entry(2)), Delivery(1, 9, entry(3)), Delivery(2, 5, entry(1))]
    assert await store.claim_ledger(again) == {"ev-2": (0, 2), "ev-3": (1, 9)}


async def test_the_events_of_one_batch_record_share_its_stamp(store: UsageStore) -> None:
    record = [Delivery(3, 40, entry(n)) for n in (10, 11, 12)]
    assert await store.claim_ledger(record) == {f"ev-{n}": (3, 40) for n in (10, 11, 12)}
    # A client retry of two of them in a new record (one new event): only the new one is owned.
    retry = [Delivery(3, 41, entry(n)) for n in (11, 12, 13)]
    assert await store.claim_ledger(retry) == {"ev-13": (3, 41)}
    # Redelivery of the first record after a crash: it still owns its three events.
    assert await store.claim_ledger(record) == {f"ev-{n}": (3, 40) for n in (10, 11, 12)}


async def test_a_redelivered_record_owns_only_the_ids_it_stored(store: UsageStore) -> None:
    yesterday = replace(entry(3), timestamp=NOW - timedelta(days=1))
    a = [Delivery(0, 1, entry(1))]
    b = [Delivery(0, 2, entry(1)), Delivery(0, 2, entry(2)), Delivery(0, 2, yesterday)]
    assert await store.claim_ledger([*a, *b]) == {"ev-1": (0, 1), "ev-2": (0, 2), "ev-3": (0, 2)}
    # Redelivered after a crash, alone, then both (the batch cut differently): the same owners, on
    # both days of b; ev-1 stays a's.
    assert await store.claim_ledger(b) == {"ev-2": (0, 2), "ev-3": (0, 2)}
    assert await store.claim_ledger([*b, *a]) == {"ev-1": (0, 1), "ev-2": (0, 2), "ev-3": (0, 2)}
    # A new record with b's ids and one of its own, beside b's redelivery: only its own id is new.
    c = [Delivery(1, 7, entry(2)), Delivery(1, 7, entry(4))]
    assert await store.claim_ledger([*b, *c]) == {"ev-2": (0, 2), "ev-3": (0, 2), "ev-4": (1, 7)}


async def test_members_are_insert_only_and_remember_their_owner(store: UsageStore) -> None:
    assert await store.claim_members({"k1": ("acme", (0, 1)), "k2": ("acme", (0, 2))}) == {
        "k1": (0, 1),
        "k2": (0, 2),
    }
    assert await store.claim_members({"k1": ("acme", (0, 7)), "k3": ("acme", (0, 8))}) == {
        "k1": (0, 1),
        "k3": (0, 8),
    }


async def test_sheets_are_version_guarded(store: UsageStore) -> None:
    tokens, requests = Aggregate("d|acme|2026-11-27|tokens_in"), Aggregate("d|acme|2026-11-27|requests")
    tokens.add(entry(5), (0, 1), ["unique_users"])
    requests.add(entry(6, meter="requests"), (0, 1))
    sheet = Sheet("d|acme|2026-11-27", {tokens.id: tokens, requests.id: requests})
    assert await store.save_sheet(sheet)
    assert sheet.version == 1
    stale = Sheet("d|acme|2026-11-27")  # version 0: someone else's view
    assert not await store.save_sheet(stale)
    loaded = (await store.load_sheets([sheet.id, "d|acme|2026-11-28"]))[sheet.id]
    assert loaded.version == 1 and set(loaded.aggregates) == {tokens.id, requests.id}
    assert comparable(loaded.aggregates[tokens.id]) == comparable(tokens)
    assert loaded.aggregates[tokens.id].positions == {0: 1}
    loaded.aggregates[tokens.id].add(entry(7), (0, 2))
    assert await store.save_sheet(loaded)
    assert not await store.save_sheet(sheet)  # still at version 1
    stored = await load_aggregates(store, [tokens.id, requests.id, "d|acme|2026-11-27|tokens_out"])
    assert set(stored) == {tokens.id, requests.id}
    assert (stored[tokens.id].quantity, stored[requests.id].quantity) == (Decimal(12), Decimal(6))


async def test_a_batch_writes_one_sheet_per_tenant_and_period_for_all_its_meters(store: UsageStore) -> None:
    meters = ["tokens_in", "tokens_out", "requests"]
    deliveries = [Delivery(0, 1, entry(i, meter=meters[i % 3])) for i in range(9)]
    deliveries.append(Delivery(0, 2, entry(9, tenant="globex")))
    result = await UsageIngestor(store, day_close_after=timedelta(hours=1)).apply(deliveries)
    assert result.documents == 4  # acme's day and month, globex's day and month
    truth = recompute(d.entry for d in deliveries)
    assert len(truth) == 8
    stored = await load_aggregates(store, list(truth))
    assert {k: comparable(v) for k, v in stored.items()} == {k: comparable(v) for k, v in truth.items()}
    sheets = await store.load_sheets(["d|acme|2026-11-27", "m|acme|2026-11"])
    assert [len(s.aggregates) for s in sheets.values()] == [3, 3]


@pytest.mark.integration
async def test_a_writer_whose_cached_sheet_went_stale_reloads_it(infra: Infra) -> None:
    """After a rebalance another consumer may write a sheet this one has cached, to another meter:
    the version guard refuses the stale write and the ingestor's reload reads the newer sheet, so
    neither meter loses anything."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[f"test_usage_store_{uuid.uuid4().hex[:8]}"]
    try:
        first, second = MongoUsageStore(db), MongoUsageStore(db)
        close = timedelta(hours=1)
        await UsageIngestor(first, day_close_after=close).apply([Delivery(0, 1, entry(1))])
        await UsageIngestor(second, day_close_after=close).apply([Delivery(0, 2, entry(2))])
        await UsageIngestor(second, day_close_after=close).apply([Delivery(1, 4, entry(4, meter="requests"))])
        await UsageIngestor(first, day_close_after=close).apply([Delivery(0, 3, entry(3))])
        fresh = MongoUsageStore(db)
        tokens, requests = "d|acme|2026-11-27|tokens_in", "d|acme|2026-11-27|requests"
        stored = await load_aggregates(fresh, [tokens, requests])
        assert (stored[tokens].quantity, stored[tokens].events) == (Decimal(6), 3)
        assert stored[tokens].positions == {0: 3}
        assert (stored[requests].quantity, stored[requests].positions) == (Decimal(4), {1: 4})
        assert (await fresh.load_sheets(["d|acme|2026-11-27"]))["d|acme|2026-11-27"].version == 4
    finally:
        await client.drop_database(db.name)
        await client.close()


@pytest.mark.integration
async def test_a_batch_updating_hundreds_of_aggregates_completes(infra: Infra) -> None:
    """FerretDB 1.24 hangs for good once as many updates are in flight as its PostgreSQL pool has
    connections (50): the ingestor writes a few documents at a time."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[f"test_usage_store_{uuid.uuid4().hex[:8]}"]
    try:
        # A client that has been busy keeps up to 100 connections: as many updates in flight.
        for _ in range(20):
            await asyncio.gather(*(db.command("ping") for _ in range(100)))
        ingestor = UsageIngestor(MongoUsageStore(db), day_close_after=timedelta(hours=1))
        tenants = [f"t{n}" for n in range(60)]  # x (day, month) = 120 documents, each updated twice
        for offset in (1, 2, 3):
            batch = [
                Delivery(0, offset * 100 + i, entry(offset * 100 + i, tenant=t))
                for i, t in enumerate(tenants)
            ]
            result = await asyncio.wait_for(ingestor.apply(batch), 120)
            assert result.documents == 120
    finally:
        await client.drop_database(db.name)
        await client.close()


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3])
async def test_a_batch_killed_mid_write_is_completed_exactly_once_by_its_redelivery(
    store: UsageStore, crash_after: int
) -> None:
    # Four sheets (two tenants' day and month), acme's with two meters.
    deliveries = [
        Delivery(0, i, entry(i, tenant=t, user=u, meter=m))
        for i, (t, u, m) in enumerate(
            [
                ("acme", "u1", "tokens_in"),
                ("acme", "u2", "requests"),
                ("globex", "u1", "tokens_in"),
                ("acme", "u1", "tokens_in"),
            ]
        )
    ]
    close = timedelta(hours=1)
    with pytest.raises(CrashForTest):
        await UsageIngestor(store, day_close_after=close, crash_after_writes=crash_after).apply(deliveries)
    # Redelivery from the committed offset, in two smaller batches, plus a republished copy.
    ingestor = UsageIngestor(store, day_close_after=close)
    await ingestor.apply(deliveries[:1])
    result = await ingestor.apply([*deliveries[1:], Delivery(0, 10, entry(2, tenant="globex"))])
    assert result.duplicates == 1
    truth = recompute(d.entry for d in deliveries)
    stored = await load_aggregates(store, list(truth))
    assert {k: comparable(v) for k, v in stored.items()} == {k: comparable(v) for k, v in truth.items()}
    # The payloads (written beside the aggregates, cut short by the crash): each event's once.
    assert sorted(await stored_payload_ids(store)) == [f"ev-{i}" for i in range(4)]


async def test_a_batch_whose_payloads_fail_is_completed_by_its_redelivery(
    store: UsageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payload chunks are written beside the aggregates: when that write fails, the batch fails
    (nothing is committed), and its redelivery stores every owned event's payload once, with the
    aggregates still exact."""
    real = store.store_payloads
    calls: list[int] = []

    async def fails_first(owned: Sequence[Delivery]) -> None:
        calls.append(len(owned))
        if len(calls) == 1:
            raise ConnectionError("payload write lost")
        await real(owned)

    monkeypatch.setattr(store, "store_payloads", fails_first)
    deliveries = [Delivery(2, i, entry(i, tenant=t)) for i, t in enumerate(["acme", "globex", "acme"])]
    close = timedelta(hours=1)
    with pytest.raises(ConnectionError):
        await UsageIngestor(store, day_close_after=close).apply(deliveries)
    result = await UsageIngestor(store, day_close_after=close).apply(deliveries)  # the redelivery
    assert calls == [3, 3] and result.effective == 3
    assert sorted(await stored_payload_ids(store)) == ["ev-0", "ev-1", "ev-2"]
    truth = recompute(d.entry for d in deliveries)
    stored = await load_aggregates(store, list(truth))
    assert {k: comparable(v) for k, v in stored.items()} == {k: comparable(v) for k, v in truth.items()}


async def stored_payload_ids(store: UsageStore) -> list[str]:
    if isinstance(store, InMemoryUsageStore):
        return [event_id for ids in store.payloads.values() for event_id in ids]
    assert isinstance(store, MongoUsageStore)
    chunks = store._db["usage_ledger_chunks"].find({})  # noqa: SLF001 - what export reads
    return [row["event_id"] async for doc in chunks for row in chunk_rows(doc)]


@pytest.mark.integration
async def test_ledger_inserts_report_existing_ids_and_raise_on_any_other_error(infra: Infra) -> None:
    """The ledger's `insert` command (not insert_many): ids stored before come back, unordered (the
    rest still go in); any other write error is raised, never taken for a duplicate."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    db = client[f"test_usage_store_{uuid.uuid4().hex[:8]}"]
    try:
        ledger = db["usage_ledger"]
        assert await _insert_new_concurrently(ledger, [{"_id": "a", "s": "1"}, {"_id": "b", "s": "1"}]) == []
        docs = [{"_id": f"n{i}", "s": "2"} for i in range(7)] + [
            {"_id": "b", "s": "2"},
            {"_id": "a", "s": "2"},
        ]
        assert sorted(await _insert_new_concurrently(ledger, docs, slice_size=3)) == ["a", "b"]
        assert await ledger.count_documents({"s": "2"}) == 7
        assert await ledger.find_one({"_id": "a"}) == {"_id": "a", "s": "1"}  # the first stays
        with pytest.raises(BulkWriteError):
            await _insert_new_concurrently(ledger, [{"_id": "c"}, {"_id": [1, 2]}, {"_id": "a"}])
    finally:
        await client.drop_database(db.name)
        await client.close()
