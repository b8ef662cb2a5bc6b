"""MongoDB side of runs. Collections (every document carries `tenant_id`; queries filter by it):

- `runs`: the view of each run stream (projection; `_version` = stream version, the ETag).
- `run_logs`: insert-only, `_id` = `{run_id}:{seq:08d}` (the run's task is the only writer);
  written behind in batches (write_behind.py), flushed before a run's end is recorded.
- `run_spans`: insert-only, `_id` = `{run_id}:{span_id}`, one document per finished span; batched
  the same way.
- `run_claims`: insert-only, which executor instance accepted each run.
- `executor_instances`: one document per executor process, written only by that process (heartbeat).
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime
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
