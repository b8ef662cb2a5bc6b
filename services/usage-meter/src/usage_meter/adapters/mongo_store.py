"""MongoDB (and FerretDB 1.24) adapters of the usage-meter: ledger, set members, aggregates, days.

Only insert-only writes with deterministic `_id`s and version-guarded whole-document replaces by the
single writer of each aggregate sheet: no `$inc` on shared documents, no transactions
(ARCHITECTURE.md).

The ledger is three insert-only collections, shaped for a cheap write per event:
- `usage_ledger`: one tiny document per event id, `{_id: event id, s: "day|partition|offset"}`; its
  unique `_id` is the dedupe, `s` names the delivery that owns the event (and its day, for retention).
- `usage_ledger_records`: one marker per Kafka record, inserted before its events are claimed. A
  record without a marker is seen for the first time, so an event id it finds already stored belongs
  to another record (a duplicate) without reading anything back; only a redelivered record (marker
  present, e.g. after a crash) reads the owners of the ids it finds stored (`OwnerReads`).
- `usage_ledger_chunks`: the events' wire payloads, one compressed document per record and day,
  naming only the events that record owns on that day; export reads these, retention deletes them
  by day. A batch record's chunk keeps the whole record's bytes (zstd) and the positions of the
  events it owns there (`r`, `i`): serializing a thousand events again cost the consumer ~4 µs per
  event, compressing the bytes as they came ~0.6 µs. So a record spanning several days is stored
  once per day, and the bytes of its duplicates are kept too (a record's events usually share a
  day). Other chunks hold the events' rows (`z`, zlib-compressed JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import pydantic_core
import zstandard
from bson import Binary
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ailab_contracts.events.usage import decimal_text
from ailab_runtime.mongo_server import is_ferretdb

from ..domain.model import (
    Aggregate,
    Delivery,
    RecordItem,
    Sheet,
    Stamp,
    UsageEntry,
    sheet_id,
)

LEDGER = "usage_ledger"
LEDGER_RECORDS = "usage_ledger_records"
LEDGER_CHUNKS = "usage_ledger_chunks"
MEMBERS = "usage_members"
AGGREGATES = "usage_aggregate_sheets"  # one document (Sheet) per tenant × period, every meter in it
LEGACY_AGGREGATES = "usage_aggregates"  # one document per tenant × period × meter, before sheets
DAYS = "usage_days"
DAY_SYNC = "usage_day_sync"
TENANT_LIMITS = "tenant_limits"
QUOTA_STATES = "quota_states"
WATERMARKS = "consumer_watermarks"
MIGRATIONS = "usage_migrations"
CLOSE_REQUESTS = "day_close_requests"  # days an operator asked to close before their window ends

log = logging.getLogger(__name__)

Doc = dict[str, Any]

# How a redelivered record learns which of the ids it finds stored are its own:
# - "by_id": one `$in` on the ledger's `_id` (MongoDB answers it from the index);
# - "by_record": one equality query on `s` per redelivered record and day. FerretDB 1.24 evaluates an
#   `$in` after converting every ledger entry (20,000 ids over 200,000 entries: 128 s), but pushes an
#   equality down to PostgreSQL (one table scan per query: ~50 ms at 200,000 entries). Unindexed on
#   MongoDB, so never used there;
# - "auto": "by_record" on FerretDB (its `buildInfo` names it), else "by_id".
OwnerReads = Literal["auto", "by_id", "by_record"]


LEGACY_LEDGER_INDEXES = ("tenant_id_1_ts_1", "ts_1")  # of the ledger before it was split
LEGACY_MIGRATION = "ledger-payload-chunks"  # marker of `migrate_legacy_ledger`, with the count copied
SHEETS_MIGRATION = "aggregate-sheets"  # marker of `migrate_legacy_aggregates`, with the count copied


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    existing = await db[LEDGER].index_information() if LEDGER in await db.list_collection_names() else {}
    for name in LEGACY_LEDGER_INDEXES:
        if name in existing:
            await db[LEDGER].drop_index(name)  # every ledger insert would keep maintaining it
    await db[LEDGER_CHUNKS].create_index([("day", 1), ("tenant_id", 1)])
    await db[MEMBERS].create_index("tenant_id")
    await db[AGGREGATES].create_index([("tenant_id", 1), ("kind", 1), ("period", 1)])
    await db[DAYS].create_index([("closed", 1), ("close_after", 1)])
    await db[DAYS].create_index("tenant_id")
    await db[DAY_SYNC].create_index("tenant_id")
    await db[QUOTA_STATES].create_index("tenant_id")


async def migrate_legacy_ledger(db: AsyncDatabase[Doc], page: int = 1000) -> int:
    """Once per database: copies the payloads of ledger entries stored before the ledger was split
    (`raw` envelope inside the entry) into payload chunks, so export keeps finding them. The entries
    themselves stay (they still dedupe); retention deletes them by their `ts`. Idempotent: chunks
    have deterministic ids, and a marker records completion. Returns the entries copied."""
    if await db[MIGRATIONS].find_one({"_id": LEGACY_MIGRATION}):
        return 0
    copied = 0
    chunks: list[Doc] = []
    fields = {"raw": 1, "p": 1, "o": 1, "tenant_id": 1, "ts": 1, "at": 1}
    async for doc in db[LEDGER].find({"raw": {"$exists": True}}, fields):
        envelope = json.loads(doc["raw"])
        day = doc["ts"].astimezone(UTC).date().isoformat()
        row = {**envelope["payload"], "event_id": doc["_id"]}
        stamp = (int(doc["p"]), int(doc["o"]))
        chunks.append(chunk_doc(stamp, doc["tenant_id"], day, [row], doc.get("at") or datetime.now(UTC)))
        if len(chunks) >= page:
            await _insert_new(db[LEDGER_CHUNKS], chunks)
            copied += len(chunks)
            chunks = []
    await _insert_new(db[LEDGER_CHUNKS], chunks)
    copied += len(chunks)
    await _insert_new(db[MIGRATIONS], [{"_id": LEGACY_MIGRATION, "at": datetime.now(UTC), "copied": copied}])
    return copied


async def migrate_legacy_aggregates(db: AsyncDatabase[Doc]) -> int:
    """Once per database, before the first consumer of this version starts: copies the aggregates
    stored one document per meter (`usage_aggregates`) into sheets, one tenant at a time. Idempotent:
    a sheet is built from all of its period's documents and inserted, so one found stored came from
    the same documents (an interrupted run) and is left; a marker records completion. The documents
    copied stay where they are. Returns the aggregates copied by this call.

    Once done, a per-meter document written after the copy (a consumer of the version before still
    running) is logged as an error: its change is not in the sheets."""
    marker = await db[MIGRATIONS].find_one({"_id": SHEETS_MIGRATION})
    if marker:
        late = await db[LEGACY_AGGREGATES].count_documents({"updated_at": {"$gt": marker["at"]}})
        if late:
            log.error(
                "per-meter aggregates written after they were copied into sheets: their changes are "
                "not counted (stop consumers of the version before aggregate sheets before upgrading)",
                extra={"fields": {"documents": late}},
            )
        return 0
    copied = 0
    for tenant in await db[LEGACY_AGGREGATES].distinct("tenant_id"):
        sheets: dict[str, Sheet] = {}
        async for doc in db[LEGACY_AGGREGATES].find({"tenant_id": tenant}):
            aggregate = Aggregate.from_doc(doc)
            sheet = sheets.setdefault(sheet_id(aggregate.id), Sheet(sheet_id(aggregate.id)))
            sheet.aggregates[aggregate.id] = aggregate
        docs = [{**sheet.to_doc(), "v": 1, "updated_at": datetime.now(UTC)} for sheet in sheets.values()]
        stored_before = set(await _insert_new(db[AGGREGATES], docs))
        copied += sum(len(s.aggregates) for i, s in sheets.items() if i not in stored_before)
    await _insert_new(db[MIGRATIONS], [{"_id": SHEETS_MIGRATION, "at": datetime.now(UTC), "copied": copied}])
    return copied


def member_period_end(key: str) -> str:
    """Last day (YYYY-MM-DD, compared as text) on which the member's aggregate can still change:
    the day itself, the month's end, or never (`t|` running totals). Retention deletes members of
    periods that ended before its cutoff; no event that old is accepted any more."""
    parts = key.split("|", 4)
    if len(parts) >= 4 and parts[0] == "d":
        return parts[2]
    if len(parts) >= 4 and parts[0] == "m":
        return f"{parts[2]}-31"
    return "9999-12-31"


def stamp_key(stamp: Stamp) -> str:
    return f"{stamp[0]}|{stamp[1]}"


def owner_text(day: str, stamp: Stamp) -> str:
    """A ledger entry's `s`: the day of its event and the stamp of the delivery that owns it."""
    return f"{day}|{stamp_key(stamp)}"


def ledger_row(entry: UsageEntry) -> Doc:
    """An event as export shows it: its wire payload plus `event_id`. Not for entries whose payload is
    a RecordItem: their chunk keeps the record's bytes (`record_chunk_doc`)."""
    payload = entry.payload
    if payload is None:  # built in code, not received: the fields the entry has
        return {
            "event_id": entry.event_id,
            "tenant_id": entry.tenant_id,
            "user_id": entry.user_id,
            "meter": entry.meter,
            "quantity": decimal_text(entry.quantity),
            "cost_usd_estimate": None if entry.cost is None else decimal_text(entry.cost),
            "provider": entry.provider,
            "model": entry.model,
            "project_id": entry.project_id,
            "agent_id": entry.agent_id,
            "timestamp": entry.timestamp.isoformat(),
        }
    if isinstance(payload, tuple):
        raise TypeError("a batch record's event is stored with its record (record_chunk_doc)")
    if payload.get("event_id") == entry.event_id:
        return payload
    return {**payload, "event_id": entry.event_id}


def pack_rows(rows: Sequence[Doc]) -> Binary:
    # Compressed JSON: a fraction of the bytes FerretDB/PostgreSQL would store and index as a document.
    return Binary(zlib.compress(pydantic_core.to_json(rows), 1))


def chunk_doc(stamp: Stamp, tenant_id: str, day: str, rows: Sequence[Doc], at: datetime) -> Doc:
    """The payload chunk of one record and day (deterministic `_id`: a redelivery inserts nothing)."""
    return {
        "_id": f"{stamp_key(stamp)}|{day}",
        "tenant_id": tenant_id,
        "day": day,
        "n": len(rows),
        "at": at,
        "z": pack_rows(rows),
    }


def index_ranges(indexes: Sequence[int]) -> str:
    """Ascending indexes as ranges, e.g. [0, 1, 2, 5, 7, 8] -> "0-2,5,7-8" (usually one range)."""
    parts: list[str] = []
    start = previous = -2
    for i in indexes:
        if i != previous + 1:
            if previous >= 0:
                parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = i
        previous = i
    if previous >= 0:
        parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(parts)


def parse_index_ranges(text: str) -> list[int]:
    indexes: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        indexes.extend(range(int(first), int(last or first) + 1))
    return indexes


_ZSTD_LEVEL = 1  # the record as JSON shrinks ~7x at ~0.6 µs per event; higher levels gain little
_compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
_decompressor = zstandard.ZstdDecompressor()


def compress_record(value: bytes) -> Binary:
    return Binary(_compressor.compress(value))


def record_chunk_doc(
    stamp: Stamp, tenant_id: str, day: str, record: Binary, indexes: Sequence[int], at: datetime
) -> Doc:
    """The payload chunk of one batch record and day: the record's bytes (`compress_record`) and the
    positions in its `payload.events` of the events this chunk holds (deterministic `_id`)."""
    return {
        "_id": f"{stamp_key(stamp)}|{day}",
        "tenant_id": tenant_id,
        "day": day,
        "n": len(indexes),
        "at": at,
        "r": record,
        "i": index_ranges(indexes),
    }


def chunk_rows(doc: Doc) -> list[Doc]:
    """The events a payload chunk holds, as sent (each with its `event_id`), in either form."""
    if "r" in doc:
        events = json.loads(_decompressor.decompress(doc["r"]))["payload"]["events"]
        return [events[i] for i in parse_index_ranges(doc["i"])]
    return unpack_rows(doc["z"])


def unpack_rows(packed: bytes) -> list[Doc]:
    rows: list[Doc] = json.loads(zlib.decompress(packed))
    return rows


def _owner(doc: Doc) -> Stamp:
    if "s" not in doc:  # entries stored before the ledger was split (p and o fields)
        return (int(doc["p"]), int(doc["o"]))
    _, partition, offset = str(doc["s"]).split("|")
    return (int(partition), int(offset))


def _stored_before(docs: list[Doc], outcome: Doc) -> list[Any]:
    """Of an unordered insert's outcome (`writeErrors`, `writeConcernErrors`), the `_id`s it found
    stored already (duplicate key). Raises BulkWriteError on any other write error, and on a write
    concern error (the new documents may not be durable)."""
    errors = outcome.get("writeErrors", [])
    if outcome.get("writeConcernErrors") or any(e.get("code") != 11000 for e in errors):
        raise BulkWriteError(outcome)
    return [docs[e["index"]]["_id"] for e in errors]


async def _insert_new(col: AsyncCollection[Doc], docs: list[Doc]) -> list[Any]:
    """Insert unordered; returns the `_id`s that already existed (duplicate key)."""
    if not docs:
        return []
    try:
        await col.insert_many(docs, ordered=False)
        return []
    except BulkWriteError as exc:
        return _stored_before(docs, exc.details)


async def _insert_small_new(col: AsyncCollection[Doc], docs: list[Doc]) -> list[Any]:
    """`_insert_new` as one `insert` command: pymongo's insert_many spends ~1.2 µs of Python per
    document (checks, `_id`s, batching) that the command's single encoding does not (measured:
    1.6-2.0 -> 0.6 µs of client CPU per ledger entry). Only for a few MB of documents at most (one
    command: 16 MB). The driver does not retry a command: a failure fails the consumer's batch, which
    is redelivered (its record markers make the redelivery read back what it owns)."""
    if not docs:
        return []
    reply = await col.database.command({"insert": col.name, "documents": docs, "ordered": False})
    concern = reply.get("writeConcernError")
    outcome = {
        "writeErrors": reply.get("writeErrors", []),
        "writeConcernErrors": [concern] if concern else [],
        "nInserted": reply.get("n", 0),
    }
    return _stored_before(docs, outcome)


async def _insert_new_concurrently(
    col: AsyncCollection[Doc], docs: list[Doc], slice_size: int = 2500
) -> list[Any]:
    """`_insert_small_new` in slices sent together: the server (FerretDB and PostgreSQL are separate
    processes) works on several at once. Only for small documents with distinct `_id`s."""
    if len(docs) <= slice_size:
        return await _insert_small_new(col, docs)
    slices = [docs[i : i + slice_size] for i in range(0, len(docs), slice_size)]
    found = await asyncio.gather(*(_insert_small_new(col, part) for part in slices))
    return [i for part in found for i in part]


class MongoUsageStore:
    def __init__(
        self,
        db: AsyncDatabase[Doc],
        member_cache_size: int = 200_000,
        sheet_cache_size: int = 5_000,
        owner_reads: OwnerReads = "auto",
    ) -> None:
        self._db = db
        self._owner_reads = owner_reads
        self._legacy_ledger: bool | None = None  # may entries of the unsplit ledger (`p`, `o`) exist?
        self._ledger = db[LEDGER]
        self._records = db[LEDGER_RECORDS]
        self._chunks = db[LEDGER_CHUNKS]
        self._members = db[MEMBERS]
        self._aggregates = db[AGGREGATES]
        self._days = db[DAYS]
        # Members and days never change once stored, so remembering them is exact and saves writes.
        self._member_cache: OrderedDict[str, Stamp] = OrderedDict()
        self._cache_size = member_cache_size
        self._noted_days: set[tuple[str, str]] = set()
        # Sheets as this writer last stored them (version-guarded writes catch any other writer).
        self._cached_sheets: OrderedDict[str, Sheet] = OrderedDict()
        self._sheet_cache_size = sheet_cache_size

    async def claim_ledger(self, deliveries: Sequence[Delivery]) -> dict[str, Stamp]:
        now = datetime.now(UTC)
        stamps = list(dict.fromkeys(d.stamp for d in deliveries))
        markers = [{"_id": stamp_key(stamp), "at": now} for stamp in stamps]
        redelivered = set(await _insert_new(self._records, markers))
        first: dict[str, Delivery] = {}
        for d in deliveries:
            first.setdefault(d.entry.event_id, d)
        texts: dict[tuple[str, Stamp], str] = {}  # owner_text, made once per record and day
        docs = []
        for event_id, d in first.items():
            where = (d.entry.day, d.stamp)
            text = texts.get(where)
            if text is None:
                text = texts[where] = owner_text(d.entry.day, d.stamp)
            docs.append({"_id": event_id, "s": text})
        stored_before = await _insert_new_concurrently(self._ledger, docs)
        owners = {event_id: d.stamp for event_id, d in first.items()}
        for event_id in stored_before:
            del owners[event_id]
        # Stored before by one of these records in an earlier attempt, or by another record: only a
        # redelivered record can be the owner, and only then is the owner read back.
        if stored_before and redelivered:
            owners.update(await self._read_owners(set(stored_before), deliveries, redelivered))
        return owners

    async def _read_owners(
        self, stored: set[str], deliveries: Sequence[Delivery], redelivered: set[str]
    ) -> dict[str, Stamp]:
        """Of the ids found `stored`, those whose entry belongs to a redelivered record of this batch
        that delivers them, with that record's stamp (the others are duplicates)."""
        stamps_of: dict[str, set[Stamp]] = defaultdict(set)
        record_days: dict[str, Stamp] = {}  # "day|partition|offset" of each redelivered record and day
        for d in deliveries:
            event_id = d.entry.event_id
            if event_id in stored and stamp_key(d.stamp) in redelivered:
                stamps_of[event_id].add(d.stamp)
                record_days[owner_text(d.entry.day, d.stamp)] = d.stamp
        owners: dict[str, Stamp] = {}
        if not stamps_of:
            return owners
        if await self._reads_owners_by_record():
            for text, stamp in record_days.items():
                async for doc in self._ledger.find({"s": text}, {"_id": 1}):
                    if doc["_id"] in stamps_of:
                        owners[doc["_id"]] = stamp
            if await self._may_hold_legacy_entries():
                for stamp in set(record_days.values()):
                    async for doc in self._ledger.find({"p": stamp[0], "o": stamp[1]}, {"_id": 1}):
                        if doc["_id"] in stamps_of:
                            owners[doc["_id"]] = stamp
            # An id not found under any of its redelivered records belongs to another record.
            return owners
        async for doc in self._ledger.find({"_id": {"$in": list(stamps_of)}}, {"s": 1, "p": 1, "o": 1}):
            owner = _owner(doc)
            if owner in stamps_of[doc["_id"]]:
                owners[doc["_id"]] = owner
        return owners

    async def _reads_owners_by_record(self) -> bool:
        if self._owner_reads == "auto":
            self._owner_reads = "by_record" if await is_ferretdb(self._db) else "by_id"
        return self._owner_reads == "by_record"

    async def _may_hold_legacy_entries(self) -> bool:
        """False once `migrate_legacy_ledger` has run and found no entry of the unsplit ledger."""
        if self._legacy_ledger is None:
            done = await self._db[MIGRATIONS].find_one({"_id": LEGACY_MIGRATION})
            self._legacy_ledger = done is None or int(done.get("copied", 0)) > 0
        return self._legacy_ledger

    async def store_payloads(self, owned: Sequence[Delivery]) -> None:
        """One chunk per record and day with the events the record owns (identical on redelivery)."""
        now = datetime.now(UTC)
        rows: dict[tuple[Stamp, str], list[Doc]] = defaultdict(list)
        positions: dict[tuple[Stamp, str], list[int]] = defaultdict(list)
        records: dict[Stamp, bytes] = {}
        tenants: dict[Stamp, str] = {}
        for d in owned:
            payload = d.entry.payload
            if type(payload) is tuple:  # RecordItem: a batch record's event, stored with its record
                item: RecordItem = payload
                records[d.stamp] = item[0]
                positions[(d.stamp, d.entry.day)].append(item[1])
            else:
                rows[(d.stamp, d.entry.day)].append(ledger_row(d.entry))
            tenants[d.stamp] = d.entry.tenant_id
        compressed = {stamp: compress_record(value) for stamp, value in records.items()}
        docs = [chunk_doc(stamp, tenants[stamp], day, items, now) for (stamp, day), items in rows.items()]
        docs += [
            record_chunk_doc(stamp, tenants[stamp], day, compressed[stamp], indexes, now)
            for (stamp, day), indexes in positions.items()
        ]
        await _insert_new(self._chunks, docs)

    async def claim_members(self, candidates: dict[str, tuple[str, Stamp]]) -> dict[str, Stamp]:
        owners: dict[str, Stamp] = {}
        docs = []
        for key, (tenant, stamp) in candidates.items():
            cached = self._member_cache.get(key)
            if cached is not None:
                owners[key] = cached
            else:
                docs.append(
                    {
                        "_id": key,
                        "tenant_id": tenant,
                        "p": stamp[0],
                        "o": stamp[1],
                        "e": member_period_end(key),
                    }
                )
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

    async def load_sheets(self, ids: Sequence[str]) -> dict[str, Sheet]:
        """Copies of the stored sheets: from this writer's cache of what it last stored, else read
        (an `$in` read is a full scan on FerretDB 1.24; the cache makes it once per sheet)."""
        found = {i: self._cached_sheets[i].copy() for i in ids if i in self._cached_sheets}
        missing = [i for i in ids if i not in found]
        if missing:
            async for doc in self._aggregates.find({"_id": {"$in": missing}}):
                sheet = Sheet.from_doc(doc)
                self._cache_sheet(sheet)
                found[sheet.id] = sheet.copy()
        return found

    async def save_sheet(self, sheet: Sheet) -> bool:
        doc = sheet.to_doc()
        doc["v"] = sheet.version + 1
        doc["updated_at"] = datetime.now(UTC)
        # Whatever happens below, the cached copy may no longer be what is stored.
        self._cached_sheets.pop(sheet.id, None)
        if sheet.version == 0:
            try:
                await self._aggregates.insert_one(doc)
            except DuplicateKeyError:
                return False
        else:
            result = await self._aggregates.replace_one({"_id": sheet.id, "v": sheet.version}, doc)
            if result.matched_count != 1:
                return False  # another writer got there first (e.g. after a rebalance): reload
        sheet.version += 1
        self._cache_sheet(sheet.copy())
        return True

    def _cache_sheet(self, sheet: Sheet) -> None:
        self._cached_sheets[sheet.id] = sheet
        self._cached_sheets.move_to_end(sheet.id)
        if len(self._cached_sheets) > self._sheet_cache_size:
            self._cached_sheets.popitem(last=False)

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
