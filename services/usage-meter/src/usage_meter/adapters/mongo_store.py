"""MongoDB (and FerretDB 1.24) adapters of the usage-meter: ledger, set members, aggregates, days.

Only insert-only writes with deterministic `_id`s and version-guarded whole-document replaces by the
single writer of each aggregate: no `$inc` on shared documents, no transactions (ARCHITECTURE.md)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ..domain.model import Aggregate, Delivery, Stamp

LEDGER = "usage_ledger"
MEMBERS = "usage_members"
AGGREGATES = "usage_aggregates"
DAYS = "usage_days"
DAY_SYNC = "usage_day_sync"
TENANT_LIMITS = "tenant_limits"
QUOTA_STATES = "quota_states"
WATERMARKS = "consumer_watermarks"
CLOSE_REQUESTS = "day_close_requests"  # days an operator asked to close before their window ends

Doc = dict[str, Any]


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    await db[LEDGER].create_index([("tenant_id", 1), ("ts", 1)])
    await db[LEDGER].create_index("ts")
    await db[MEMBERS].create_index("tenant_id")
    await db[AGGREGATES].create_index([("tenant_id", 1), ("kind", 1), ("period", 1)])
    await db[DAYS].create_index([("closed", 1), ("close_after", 1)])
    await db[DAYS].create_index("tenant_id")
    await db[DAY_SYNC].create_index("tenant_id")
    await db[QUOTA_STATES].create_index("tenant_id")


def ledger_doc(d: Delivery, ingested_at: datetime) -> Doc:
    e = d.entry
    # Compact on purpose: the envelope stays one JSON string (a nested document costs FerretDB ~2x
    # per insert), and the fields queries need (tenant, time, stamp) sit beside it.
    return {
        "_id": e.event_id,
        "tenant_id": e.tenant_id,
        "ts": e.timestamp,
        "p": d.partition,
        "o": d.offset,
        "at": ingested_at,
        "raw": e.raw,
    }


async def _insert_new(col: AsyncCollection[Doc], docs: list[Doc]) -> list[Any]:
    """Insert unordered; returns the `_id`s that already existed (duplicate key)."""
    if not docs:
        return []
    try:
        await col.insert_many(docs, ordered=False)
        return []
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        others = [e for e in errors if e.get("code") != 11000]
        if others:
            raise
        return [docs[e["index"]]["_id"] for e in errors]


class MongoUsageStore:
    def __init__(self, db: AsyncDatabase[Doc], member_cache_size: int = 200_000) -> None:
        self._ledger = db[LEDGER]
        self._members = db[MEMBERS]
        self._aggregates = db[AGGREGATES]
        self._days = db[DAYS]
        # Members and days never change once stored, so remembering them is exact and saves writes.
        self._member_cache: OrderedDict[str, Stamp] = OrderedDict()
        self._cache_size = member_cache_size
        self._noted_days: set[tuple[str, str]] = set()

    async def claim_ledger(self, deliveries: Sequence[Delivery]) -> dict[str, Stamp]:
        now = datetime.now(UTC)
        docs = [ledger_doc(d, now) for d in deliveries]
        existing = set(await _insert_new(self._ledger, docs))
        owners = {d.entry.event_id: d.stamp for d in deliveries if d.entry.event_id not in existing}
        # Within one batch the first copy of an id was inserted; its later copies are duplicates.
        seen: set[str] = set()
        for d in deliveries:
            if d.entry.event_id in seen:
                existing.add(d.entry.event_id)
            seen.add(d.entry.event_id)
        if existing:
            async for doc in self._ledger.find({"_id": {"$in": list(existing)}}, {"p": 1, "o": 1}):
                owners[doc["_id"]] = (int(doc["p"]), int(doc["o"]))
        return owners

    async def claim_members(self, candidates: dict[str, tuple[str, Stamp]]) -> dict[str, Stamp]:
        owners: dict[str, Stamp] = {}
        docs = []
        for key, (tenant, stamp) in candidates.items():
            cached = self._member_cache.get(key)
            if cached is not None:
                owners[key] = cached
            else:
                docs.append({"_id": key, "tenant_id": tenant, "p": stamp[0], "o": stamp[1]})
        existing = await _insert_new(self._members, docs)
        for doc in docs:
            owners[doc["_id"]] = (doc["p"], doc["o"])
        if existing:
            async for doc in self._members.find({"_id": {"$in": existing}}, {"p": 1, "o": 1}):
                owners[doc["_id"]] = (int(doc["p"]), int(doc["o"]))
        for key in docs:
            self._remember(key["_id"], owners[key["_id"]])
        return owners

    def _remember(self, key: str, stamp: Stamp) -> None:
        self._member_cache[key] = stamp
        if len(self._member_cache) > self._cache_size:
            self._member_cache.popitem(last=False)

    async def load_aggregates(self, ids: Sequence[str]) -> dict[str, Aggregate]:
        return {
            doc["_id"]: Aggregate.from_doc(doc)
            async for doc in self._aggregates.find({"_id": {"$in": list(ids)}})
        }

    async def save_aggregate(self, aggregate: Aggregate) -> bool:
        doc = aggregate.to_doc()
        doc["v"] = aggregate.version + 1
        doc["updated_at"] = datetime.now(UTC)
        if aggregate.version == 0:
            try:
                await self._aggregates.insert_one(doc)
            except DuplicateKeyError:
                return False
        else:
            result = await self._aggregates.replace_one({"_id": aggregate.id, "v": aggregate.version}, doc)
            if result.matched_count != 1:
                return False
        aggregate.version += 1
        return True

    async def note_days(self, days: dict[tuple[str, str], datetime]) -> None:
        new = {k: v for k, v in days.items() if k not in self._noted_days}
        await _insert_new(
            self._days,
            [
                {"_id": f"{t}|{day}", "tenant_id": t, "day": day, "close_after": at, "closed": False}
                for (t, day), at in new.items()
            ],
        )
        self._noted_days.update(new)
