"""The event-store contract and the concurrency guarantees, proven on the real MongoDB-wire backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.counters import KeyedSerializer, LedgerCounter
from ailab_runtime.eventstore import ConcurrencyConflict, MongoEventStore
from ailab_runtime.mongo_server import is_ferretdb
from ailab_runtime.testing.eventstore_contract import EventStoreContract, created, updated

pytestmark = pytest.mark.integration


class TestMongoEventStore(EventStoreContract):
    @pytest.fixture
    async def event_store(self, db: AsyncDatabase[dict[str, Any]]) -> MongoEventStore:
        store = MongoEventStore(db)
        await store.ensure_indexes()
        return store


async def test_many_concurrent_writers_one_winner_per_version(db: AsyncDatabase[dict[str, Any]]) -> None:
    """15 writers race to extend one stream 4 times each: every version has exactly one event."""
    store = MongoEventStore(db)
    await store.ensure_indexes()
    await store.append("race", 0, [created("race")])
    wins = 0
    conflicts = 0

    async def writer() -> None:
        nonlocal wins, conflicts
        done = 0
        while done < 4:
            current = await store.stream_version("race")
            try:
                await store.append("race", current, [updated("race", current + 1)])
                wins += 1
                done += 1
            except ConcurrencyConflict:
                conflicts += 1

    await asyncio.gather(*(writer() for _ in range(15)))
    events = await store.read_stream("race")
    versions = [e.stream_version for e in events]
    assert versions == list(range(1, 62)), "every version exactly once, no gaps"
    assert wins == 60
    assert conflicts > 0, "the race really happened"


async def test_raw_concurrent_inc_on_this_backend(db: AsyncDatabase[dict[str, Any]]) -> None:
    """50 writers x 20 raw `$inc` on one document. Exact on MongoDB 7; FerretDB 1.24 (both SQLite
    and PostgreSQL handlers) reads, applies the update in Go and writes back by _id, so it loses
    increments: measured here, and the reason the system never relies on concurrent updates."""
    col = db["raw_inc"]
    await col.insert_one({"_id": "c", "n": 0})

    async def writer() -> None:
        for _ in range(20):
            await col.update_one({"_id": "c"}, {"$inc": {"n": 1}})

    await asyncio.gather(*(writer() for _ in range(50)))
    doc = await col.find_one({"_id": "c"})
    assert doc is not None
    if await is_ferretdb(db):
        assert doc["n"] <= 1000
        pytest.xfail(f"FerretDB lost {1000 - doc['n']} of 1000 concurrent $inc (known; see counters.py)")
    assert doc["n"] == 1000


async def test_serialized_concurrent_inc_loses_nothing(db: AsyncDatabase[dict[str, Any]]) -> None:
    """The same 50 concurrent writers routed through one writer per document: exact."""
    col = db["serialized_inc"]
    await col.insert_one({"_id": "c", "n": 0})
    serializer = KeyedSerializer()

    async def writer() -> None:
        for _ in range(20):
            async with serializer.hold("c"):
                await col.update_one({"_id": "c"}, {"$inc": {"n": 1}})

    await asyncio.gather(*(writer() for _ in range(50)))
    doc = await col.find_one({"_id": "c"})
    assert doc is not None and doc["n"] == 1000


async def test_ledger_counter_is_exact_and_idempotent(db: AsyncDatabase[dict[str, Any]]) -> None:
    """50 concurrent writers insert 1000 increments, every one sent twice: the total is exact."""
    counter = LedgerCounter(db["ledger"])
    await counter.ensure_indexes()

    async def writer(w: int) -> None:
        for i in range(20):
            for _ in range(2):  # redelivery
                await counter.add("tenant-a:requests", 3, entry_id=f"{w}-{i}")

    await asyncio.gather(*(writer(w) for w in range(50)))
    assert await counter.total("tenant-a:requests") == 3000
    assert await counter.total("other") == 0
