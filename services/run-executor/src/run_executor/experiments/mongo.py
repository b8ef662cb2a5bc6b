"""Experiment ports over the service's own MongoDB: its event store (through the `Runtime`) and the
insert-only `experiment_run_requests` collection.

`RuntimeEventRecorder` appends like `Runtime.record` (one commit, then inline projection) but sets
the envelopes' `causation_id` (the ExperimentStarted event id) and `correlation_id` (that event's
correlation id) itself, which `Runtime.record` takes from the request context instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope, new_envelope
from ailab_contracts.events.runs import EXPERIMENT_RUN_STREAM_PREFIX
from ailab_runtime.eventstore import ConcurrencyConflict
from ailab_runtime.service import Runtime
from ailab_runtime.tracing import inject_http_headers

from .ports import StreamConflict

log = logging.getLogger(__name__)

REQUESTS = "experiment_run_requests"
_RUN_STREAMS = {"$regex": "^" + re.escape(EXPERIMENT_RUN_STREAM_PREFIX + ":")}
COMPLETED = "runs.ExperimentRunCompleted"


class RuntimeEventRecorder:
    """`EventRecorder` and `StreamReader` over the runtime's event store (the outbox: the relay
    publishes what it appends to `ailab.runs.events`)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def record(
        self,
        stream_id: str,
        expected_version: int,
        tenant_id: str,
        events: Sequence[BaseModel],
        causation_id: str | None,
        correlation_id: str | None = None,
    ) -> int:
        runtime = self._runtime
        envelopes = [
            new_envelope(
                runtime.registry,
                payload,
                stream_id=stream_id,
                stream_version=expected_version + i,
                tenant_id=tenant_id,
                producer=runtime.settings.service_name,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
            for i, payload in enumerate(events, start=1)
        ]
        try:
            commit = await runtime.store.append(
                stream_id, expected_version, envelopes, trace_headers=inject_http_headers({})
            )
        except ConcurrencyConflict as exc:
            raise StreamConflict(stream_id) from exc
        try:
            await runtime.projector.apply_commit(commit)
        except Exception:  # noqa: BLE001 - the commit is durable; catch-up will project it
            log.exception("inline projection failed; catch-up will retry")
        return commit.last_version

    async def read_stream(self, stream_id: str) -> list[EventEnvelope]:
        return await self._runtime.store.read_stream(stream_id)


class MongoOpenRunScanner:
    """`OpenRunScanner` over the event store's commit documents: run streams whose first commit
    exists (ExperimentRunStarted is always version 1) minus those with a commit holding
    ExperimentRunCompleted."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], collection: str = "events") -> None:
        self._commits = db[collection]

    async def open_runs(self) -> list[str]:
        started = [
            d["stream_id"]
            async for d in self._commits.find(
                {"stream_id": _RUN_STREAMS, "stream_version": 1}, {"stream_id": 1}
            ).sort("seq", 1)
        ]
        completed = {
            d["stream_id"]
            async for d in self._commits.find(
                {"stream_id": _RUN_STREAMS, "events.event_type": COMPLETED}, {"stream_id": 1}
            )
        }
        return [s for s in started if s not in completed]


class MongoRunRequests:
    """`RunRequestStore`: insert-only, `_id` = run stream id (a duplicate key = already kept)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[REQUESTS]

    async def ensure_indexes(self) -> None:
        await self._col.create_index("tenant_id")

    async def save(self, stream_id: str, envelope: EventEnvelope) -> None:
        try:
            await self._col.insert_one(
                {"_id": stream_id, "tenant_id": envelope.tenant_id, "envelope": envelope.to_wire()}
            )
        except DuplicateKeyError:
            pass

    async def get(self, stream_id: str) -> EventEnvelope | None:
        doc = await self._col.find_one({"_id": stream_id})
        return None if doc is None else EventEnvelope.model_validate(doc["envelope"])
