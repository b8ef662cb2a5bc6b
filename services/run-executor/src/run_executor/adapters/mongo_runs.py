"""MongoDB side of runs. Collections (every document carries `tenant_id`; queries filter by it):

- `runs`: the view of each run stream (projection; `_version` = stream version, the ETag).
- `run_logs`: insert-only, `_id` = `{run_id}:{seq:08d}` (the run's task is the only writer);
  written behind in batches (write_behind.py), flushed before a run's end is recorded.
- `run_spans`: insert-only, `_id` = `{run_id}:{span_id}`, one document per finished span; batched
  the same way.
- `run_claims`: insert-only, which executor instance accepted each run.
- `executor_instances`: one document per executor process, written only by that process (heartbeat).
- `run_retention`: per purge kind, the finish time before which every run's data was purged.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts.events.runs import RunTotals
from ailab_runtime.pagination import decode_cursor, encode_cursor

from ..application.ports import RunFilter
from ..domain.model import ACTIVE, Run
from ..engine.spans import Span
from .write_behind import WriteBehind

Db = AsyncDatabase[dict[str, Any]]

RUNS = "runs"
RUN_LOGS = "run_logs"
RUN_SPANS = "run_spans"
RUN_CLAIMS = "run_claims"
EXECUTOR_INSTANCES = "executor_instances"
RUN_RETENTION = "run_retention"


async def ensure_indexes(db: Db) -> None:
    runs = db[RUNS]
    await runs.create_index([("tenant_id", ASCENDING), ("_id", ASCENDING)], name="tenant_id")
    await runs.create_index(
        [("tenant_id", ASCENDING), ("agent_id", ASCENDING), ("_id", ASCENDING)], name="agent"
    )
    await runs.create_index(
        [("tenant_id", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)], name="status"
    )
    await runs.create_index([("status", ASCENDING)], name="active")
    await runs.create_index([("finished_at", ASCENDING), ("_id", ASCENDING)], name="finished")
    await db[RUN_LOGS].create_index(
        [("tenant_id", ASCENDING), ("run_id", ASCENDING), ("_id", ASCENDING)], name="run"
    )
    await db[RUN_SPANS].create_index(
        [("tenant_id", ASCENDING), ("run_id", ASCENDING), ("start_time", ASCENDING)], name="run"
    )
    await db[RUN_CLAIMS].create_index("instance_id", name="instance")


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def run_to_doc(run: Run) -> dict[str, Any]:
    doc = {f.name: getattr(run, f.name) for f in fields(Run) if f.name not in ("id", "version")}
    return {"_id": run.id, **doc, "_version": run.version}


def run_from_doc(doc: dict[str, Any]) -> Run:
    names = {f.name for f in fields(Run)} - {"id", "version"}
    values = {n: _utc(doc[n]) for n in names if n in doc}
    return Run(id=doc["_id"], version=int(doc["_version"]), **values)


class MongoRunViews:
    def __init__(self, db: Db) -> None:
        self._col = db[RUNS]

    async def get(self, tenant_id: str, run_id: str) -> Run | None:
        doc = await self._col.find_one({"_id": run_id, "tenant_id": tenant_id})
        return run_from_doc(doc) if doc else None

    async def list(self, tenant_id: str, flt: RunFilter) -> tuple[list[Run], str | None]:
        """Newest first (run ids are time-ordered), after the cursor."""
        query: dict[str, Any] = {"tenant_id": tenant_id, "deleted": False}
        if flt.agent_id:
            query["agent_id"] = flt.agent_id
        if flt.status:
            query["status"] = flt.status
        created: dict[str, Any] = {}
        if flt.created_after:
            created["$gt"] = flt.created_after
        if flt.created_before:
            created["$lt"] = flt.created_before
        if created:
            query["created_at"] = created
        after = decode_cursor(flt.cursor)
        if after is not None:
            query["_id"] = {"$lt": after}
        docs = [d async for d in self._col.find(query).sort("_id", DESCENDING).limit(flt.limit + 1)]
        next_cursor = encode_cursor(str(docs[flt.limit - 1]["_id"])) if len(docs) > flt.limit else None
        return [run_from_doc(d) for d in docs[: flt.limit]], next_cursor

    async def active(self, limit: int = 1000) -> list[Run]:
        cursor = self._col.find({"status": {"$in": sorted(ACTIVE)}, "deleted": False}).limit(limit)
        return [run_from_doc(d) async for d in cursor]


class MongoRunLogs:
    def __init__(self, db: Db) -> None:
        self._col = db[RUN_LOGS]
        self._writes = WriteBehind(self._col)

    async def append(self, entry: dict[str, Any]) -> None:
        await self._writes.add(dict(entry))  # a duplicate id (the same line again) is skipped

    async def flush(self) -> None:
        await self._writes.flush()

    async def close(self) -> None:
        await self._writes.close()

    async def page(
        self, tenant_id: str, run_id: str, cursor: str | None, limit: int, level: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query: dict[str, Any] = {"tenant_id": tenant_id, "run_id": run_id}
        if level:
            query["level"] = level
        after = decode_cursor(cursor)
        if after is not None:
            query["_id"] = {"$gt": after}
        docs = [d async for d in self._col.find(query).sort("_id", ASCENDING).limit(limit + 1)]
        next_cursor = encode_cursor(str(docs[limit - 1]["_id"])) if len(docs) > limit else None
        return [{**d, "ts": _utc(d["ts"])} for d in docs[:limit]], next_cursor

    async def delete_run(self, tenant_id: str, run_id: str) -> None:
        await self._col.delete_many({"tenant_id": tenant_id, "run_id": run_id})


class MongoRunSpans:
    def __init__(self, db: Db) -> None:
        self._col = db[RUN_SPANS]
        self._writes = WriteBehind(self._col)

    async def insert(self, tenant_id: str, run_id: str, span: Span) -> None:
        doc = {
            "_id": f"{run_id}:{span.span_id}",
            "tenant_id": tenant_id,
            "run_id": run_id,
            # spans started within the same millisecond (the stored resolution) keep their order
            "opened": span.opened,
            **span.as_doc(),
        }
        await self._writes.add(doc)

    async def flush(self) -> None:
        await self._writes.flush()

    async def close(self) -> None:
        await self._writes.close()

    async def of_run(self, tenant_id: str, run_id: str, limit: int) -> list[dict[str, Any]]:
        cursor = (
            self._col.find({"tenant_id": tenant_id, "run_id": run_id})
            .sort([("start_time", ASCENDING), ("opened", ASCENDING)])
            .limit(limit)
        )
        out = []
        async for doc in cursor:
            doc["start_time"] = _utc(doc["start_time"])
            doc["end_time"] = _utc(doc.get("end_time"))
            for event in doc.get("events") or []:
                event["time"] = _utc(event.get("time"))
            out.append(doc)
        return out

    async def delete_run(self, tenant_id: str, run_id: str) -> None:
        await self._col.delete_many({"tenant_id": tenant_id, "run_id": run_id})


class MongoExecutorLeases:
    def __init__(self, db: Db) -> None:
        self._claims = db[RUN_CLAIMS]
        self._instances = db[EXECUTOR_INSTANCES]

    async def claim(self, run_id: str, tenant_id: str, instance_id: str) -> None:
        await self._claims.insert_one(
            {
                "_id": run_id,
                "tenant_id": tenant_id,
                "instance_id": instance_id,
                "claimed_at": datetime.now(UTC),
            }
        )

    async def owner(self, run_id: str) -> str | None:
        doc = await self._claims.find_one({"_id": run_id}, {"instance_id": 1})
        return str(doc["instance_id"]) if doc else None

    async def heartbeat(self, instance_id: str, at: datetime) -> None:
        # one writer per document: only this instance updates its own heartbeat
        await self._instances.update_one({"_id": instance_id}, {"$set": {"heartbeat_at": at}}, upsert=True)

    async def alive(self, instance_id: str, since: datetime) -> bool:
        doc = await self._instances.find_one(
            {"_id": instance_id, "heartbeat_at": {"$gte": since}}, {"_id": 1}
        )
        return doc is not None

    async def retire(self, instance_id: str) -> None:
        await self._instances.delete_one({"_id": instance_id})


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


class MongoMeteredTotals:
    """Totals of a run from the usage events it already recorded (streams `usage:{tenant}:{run}:*` of
    this service's own event store), for runs that end without their task."""

    def __init__(self, db: Db, events_collection: str = "events") -> None:
        self._events = db[events_collection]

    async def totals(self, tenant_id: str, run_id: str) -> RunTotals:
        prefix = f"^{re.escape(f'usage:{tenant_id}:{run_id}:')}"
        tokens_in = tokens_out = calls = unpriced = 0
        cost = Decimal(0)
        async for commit in self._events.find({"tenant_id": tenant_id, "stream_id": {"$regex": prefix}}):
            for event in commit.get("events") or []:
                payload = event.get("payload") or {}
                meter = payload.get("meter")
                if meter == "requests":
                    calls += 1
                    if (payload.get("dimensions") or {}).get("cost_status") == "unpriced":
                        unpriced += 1
                elif meter == "tokens_in":
                    tokens_in += int(_decimal(payload.get("quantity")))
                elif meter == "tokens_out":
                    tokens_out += int(_decimal(payload.get("quantity")))
                if payload.get("cost_usd_estimate") is not None:
                    cost += _decimal(payload["cost_usd_estimate"])
        return RunTotals(
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=format(cost.normalize(), "f") if cost else "0",
            unpriced_calls=unpriced,
            provider_calls=calls,
        )


class MongoRunRetention:
    """Deletes logs, spans and claims of runs finished before a time, at most `batch` documents per
    delete. `run_retention` keeps, per kind, the finish time before which all runs were purged, so a
    pass reads only the runs that aged out since the previous one (minus `overlap`, for a run whose
    end was projected late)."""

    def __init__(self, db: Db, batch: int = 1000, overlap: timedelta = timedelta(hours=1)) -> None:
        self._db = db
        self._runs = db[RUNS]
        self._marks = db[RUN_RETENTION]
        self._batch = batch
        self._overlap = overlap

    async def purge_logs_and_spans(self, finished_before: datetime) -> tuple[int, int]:
        counts = await self._purge("logs_spans", finished_before, (RUN_LOGS, RUN_SPANS))
        return counts[RUN_LOGS], counts[RUN_SPANS]

    async def purge_claims(self, finished_before: datetime) -> int:
        return (await self._purge("claims", finished_before, (RUN_CLAIMS,)))[RUN_CLAIMS]

    async def _purge(self, kind: str, before: datetime, collections: tuple[str, ...]) -> dict[str, int]:
        mark = await self._marks.find_one({"_id": kind})
        previous = _utc(mark.get("purged_before")) if mark else None
        finished: dict[str, Any] = {"$lt": before}
        if isinstance(previous, datetime):
            finished["$gte"] = previous - self._overlap
        counts = dict.fromkeys(collections, 0)
        last: str | None = None
        while True:
            query: dict[str, Any] = {"finished_at": finished}
            if last is not None:
                query["_id"] = {"$gt": last}
            page = [
                d
                async for d in self._runs.find(query, {"tenant_id": 1})
                .sort("_id", ASCENDING)
                .limit(min(self._batch, 500))
            ]
            if not page:
                break
            last = str(page[-1]["_id"])
            for name in collections:
                counts[name] += await self._delete_of_runs(name, page)
        if not isinstance(previous, datetime) or previous < before:
            # several instances may write this at once; a lost update only makes a pass rescan a little
            await self._marks.update_one({"_id": kind}, {"$set": {"purged_before": before}}, upsert=True)
        return counts

    async def _delete_of_runs(self, name: str, runs: list[dict[str, Any]]) -> int:
        col = self._db[name]
        if name == RUN_CLAIMS:  # `_id` = run id; a page holds at most `batch` runs
            result = await col.delete_many({"_id": {"$in": [r["_id"] for r in runs]}})
            return int(result.deleted_count)
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for run in runs:
            by_tenant[run["tenant_id"]].append(run["_id"])
        deleted = 0
        for tenant_id, run_ids in by_tenant.items():
            query = {"tenant_id": tenant_id, "run_id": {"$in": run_ids}}
            while True:
                ids = [d["_id"] async for d in col.find(query, {"_id": 1}).limit(self._batch)]
                if not ids:
                    break
                result = await col.delete_many({"tenant_id": tenant_id, "_id": {"$in": ids}})
                deleted += int(result.deleted_count)
                if len(ids) < self._batch:
                    break
        return deleted
