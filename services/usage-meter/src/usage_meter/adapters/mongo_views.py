"""Read models and small single-writer documents of the usage-meter: aggregates for the read API,
day close/sync status, tenant limits, quota states, watermarks, ledger export and retention."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, TypeAdapter
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_runtime.mongo_server import delete_matching, is_ferretdb

from ..domain.model import QuotaUsage, quota_sheet_ids, sheet_aggregate_docs
from .mongo_store import (
    AGGREGATES,
    CLOSE_REQUESTS,
    DAY_SYNC,
    DAYS,
    LEDGER,
    LEDGER_CHUNKS,
    LEDGER_RECORDS,
    MEMBERS,
    QUOTA_STATES,
    TENANT_LIMITS,
    WATERMARKS,
    chunk_rows,
)

Doc = dict[str, Any]

_AWARE_DATETIME: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def _row_time(value: Any) -> datetime:
    """A stored event's timestamp, read as the contract's model reads it. Events the bulk API stored
    before it wrote timestamps in wire form may hold any form the model accepts (e.g. unix seconds)."""
    if type(value) is str:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return _AWARE_DATETIME.validate_python(value)


class MongoUsageViews:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db

    # --- read API ----------------------------------------------------------------------------
    async def aggregates(
        self, tenant_id: str, kind: str, first: str, last: str, meter: str | None = None
    ) -> list[Doc]:
        """The aggregates of a tenant's periods in [first, last], one document per meter
        (`aggregate_doc`), ordered by period and meter."""
        query: Doc = {"tenant_id": tenant_id, "kind": kind, "period": {"$gte": first, "$lte": last}}
        docs = [d async for sheet in self._db[AGGREGATES].find(query) for d in sheet_aggregate_docs(sheet)]
        wanted = [d for d in docs if meter in (None, d["meter"])]
        return sorted(wanted, key=lambda d: (d["period"], d["meter"]))

    async def quota_usage(self, tenant_id: str, month: str) -> dict[str, QuotaUsage]:
        """The tenant's month sheet and running-totals sheet as quota evaluation reads them (by
        sheet id; absent: nothing stored yet). Two reads by `_id`: on FerretDB 1.24 cheaper than the
        range query `aggregates` makes."""
        found: dict[str, QuotaUsage] = {}
        for sheet in quota_sheet_ids(tenant_id, month):
            doc = await self._db[AGGREGATES].find_one({"_id": sheet})
            if doc is not None:
                found[sheet] = QuotaUsage.of_doc(doc)
        return found

    async def day_status(self, tenant_id: str, days: Sequence[str]) -> dict[str, Doc]:
        ids = [f"{tenant_id}|{d}" for d in days]
        out: dict[str, Doc] = {}
        async for doc in self._db[DAYS].find({"_id": {"$in": ids}, "tenant_id": tenant_id}):
            out[doc["day"]] = {"closed": bool(doc.get("closed")), "closed_at": doc.get("closed_at")}
        async for doc in self._db[DAY_SYNC].find({"_id": {"$in": ids}, "tenant_id": tenant_id}):
            out.setdefault(doc["day"], {"closed": False})["sync"] = doc
        return out

    # --- day closing ---------------------------------------------------------------------------
    async def watermark(self, group: str) -> datetime | None:
        """Oldest per-partition watermark of the usage consumer group, once every partition has one."""
        docs = [d async for d in self._db[WATERMARKS].find({"group": group})]
        if not docs or len(docs) < max(int(d.get("partitions", 0)) for d in docs):
            return None
        marks: list[datetime] = [d["wm"] for d in docs]
        return min(marks)

    async def closable_days(self, until: datetime, limit: int = 500) -> list[Doc]:
        cursor = self._db[DAYS].find({"closed": False, "close_after": {"$lte": until}}).limit(limit)
        return [d async for d in cursor]

    async def day(self, tenant_id: str, day: str) -> Doc | None:
        return await self._db[DAYS].find_one({"_id": f"{tenant_id}|{day}", "tenant_id": tenant_id})

    async def request_close(self, tenant_id: str, day: str, requested_at: datetime, by: str) -> Doc:
        """Ask the day closer to close a day now (insert-only; asking twice keeps the first ask)."""
        doc = {
            "_id": f"{tenant_id}|{day}",
            "tenant_id": tenant_id,
            "day": day,
            "requested_at": requested_at,
            "by": by,
        }
        try:
            await self._db[CLOSE_REQUESTS].insert_one(doc)
        except DuplicateKeyError:
            found = await self._db[CLOSE_REQUESTS].find_one({"_id": doc["_id"]})
            return found or doc
        return doc

    async def close_requests(self, until: datetime, limit: int = 500) -> list[Doc]:
        """Requests made before `until` (everything published before them has been consumed)."""
        cursor = self._db[CLOSE_REQUESTS].find({"requested_at": {"$lte": until}}).limit(limit)
        return [d async for d in cursor]

    async def drop_close_request(self, tenant_id: str, day: str) -> None:
        await self._db[CLOSE_REQUESTS].delete_one({"_id": f"{tenant_id}|{day}"})

    async def mark_closed(self, tenant_id: str, day: str, closed_at: datetime) -> None:
        await self._db[DAYS].update_one(
            {"_id": f"{tenant_id}|{day}", "tenant_id": tenant_id},
            {"$set": {"closed": True, "closed_at": closed_at}},
        )

    async def set_sync_status(self, tenant_id: str, day: str, status: str, at: datetime, body: Doc) -> None:
        """Latest billing report per day (a report older than the stored one is ignored)."""
        doc = {
            "_id": f"{tenant_id}|{day}",
            "tenant_id": tenant_id,
            "day": day,
            "status": status,
            "at": at,
            **body,
        }
        result = await self._db[DAY_SYNC].replace_one({"_id": doc["_id"], "at": {"$lte": at}}, doc)
        if result.matched_count == 0:
            try:
                await self._db[DAY_SYNC].insert_one(doc)
            except DuplicateKeyError:
                pass  # a newer report is stored

    # --- limits and quotas ---------------------------------------------------------------------
    async def set_limits(self, tenant_id: str, limits: Doc, plan: str | None, at: datetime) -> None:
        doc = {"_id": tenant_id, "tenant_id": tenant_id, "limits": limits, "plan": plan, "at": at}
        result = await self._db[TENANT_LIMITS].replace_one({"_id": tenant_id, "at": {"$lte": at}}, doc)
        if result.matched_count == 0:
            try:
                await self._db[TENANT_LIMITS].insert_one(doc)
            except DuplicateKeyError:
                pass

    async def limits(self, tenant_id: str) -> Doc | None:
        doc = await self._db[TENANT_LIMITS].find_one({"_id": tenant_id})
        return doc.get("limits") if doc else None

    async def quota_states(self, tenant_id: str) -> dict[str, Doc]:
        return {d["quota"]: d async for d in self._db[QUOTA_STATES].find({"tenant_id": tenant_id})}

    async def save_quota_state(self, tenant_id: str, quota: str, state: Doc) -> None:
        doc = {"_id": f"{tenant_id}|{quota}", "tenant_id": tenant_id, "quota": quota, **state}
        result = await self._db[QUOTA_STATES].replace_one(
            {"_id": doc["_id"], "sequence": {"$lt": state["sequence"]}}, doc
        )
        if result.matched_count == 0:
            try:
                await self._db[QUOTA_STATES].insert_one(doc)
            except DuplicateKeyError:
                pass

    async def stale_quota_tenants(self, month: str) -> list[str]:
        query = {"period": {"$nin": [month, "current"]}, "state": {"$ne": "ok"}}
        return sorted({d["tenant_id"] async for d in self._db[QUOTA_STATES].find(query, {"tenant_id": 1})})

    # --- ledger export and retention -------------------------------------------------------------
    async def ledger(self, tenant_id: str | None, start: datetime, end: datetime) -> AsyncIterator[Doc]:
        """Events with start <= timestamp < end (wire payload + `event_id`), ordered by timestamp and
        event id; read one day at a time, so memory holds one day of the export at most."""
        day = start.astimezone(UTC).date()
        while datetime(day.year, day.month, day.day, tzinfo=UTC) < end:
            query: Doc = {"day": day.isoformat()}
            if tenant_id:
                query["tenant_id"] = tenant_id
            rows = []
            async for doc in self._db[LEDGER_CHUNKS].find(query, {"z": 1, "r": 1, "i": 1}):
                for row in chunk_rows(doc):
                    at = _row_time(row["timestamp"])
                    if start <= at < end:
                        rows.append((at, row["event_id"], row))
            rows.sort(key=lambda r: (r[0], r[1]))
            for _, _, row in rows:
                yield row
            day += timedelta(days=1)

    async def expire(self, older_than: datetime) -> int:
        """Deletes ledger entries (events) of the days before `older_than`'s UTC day, with their
        payloads, and the unique-member records of periods that ended before it; aggregates are
        kept. Returns the number of events deleted."""
        cutoff = older_than.astimezone(UTC).date().isoformat()
        # A day's entries are far more than one delete command may remove on FerretDB: in rounds
        # there.
        ferretdb = await is_ferretdb(self._db)
        events = await delete_matching(self._db[LEDGER], {"s": {"$lt": cutoff}}, ferretdb=ferretdb)
        # Entries stored before the split.
        events += await delete_matching(self._db[LEDGER], {"ts": {"$lt": older_than}}, ferretdb=ferretdb)
        await delete_matching(self._db[LEDGER_CHUNKS], {"day": {"$lt": cutoff}}, ferretdb=ferretdb)
        await delete_matching(self._db[LEDGER_RECORDS], {"at": {"$lt": older_than}}, ferretdb=ferretdb)
        # Unique users/projects of past periods.
        await delete_matching(self._db[MEMBERS], {"e": {"$lt": cutoff}}, ferretdb=ferretdb)
        return events

    async def member_count(self, tenant_id: str) -> int:
        return int(await self._db[MEMBERS].count_documents({"tenant_id": tenant_id}))
