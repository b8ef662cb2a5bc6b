"""In-memory fakes of the experiment ports, for unit tests and offline wiring."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel

from ailab_contracts import REGISTRY, EventEnvelope, EventRegistry, new_envelope
from ailab_contracts.events.runs import EXPERIMENT_RUN_STREAM_PREFIX
from ailab_runtime.eventstore import ConcurrencyConflict, InMemoryEventStore

from .ports import DATASET_CHANGED, ExperimentRunError, StreamConflict


class InMemoryRunStore:
    """`EventRecorder`, `StreamReader` and `OpenRunScanner` over the runtime's in-memory event store
    (same optimistic-concurrency rule as the MongoDB one)."""

    def __init__(self, registry: EventRegistry = REGISTRY, producer: str = "run-executor") -> None:
        self.store = InMemoryEventStore()
        self._registry = registry
        self._producer = producer
        self.appends = 0

    async def record(
        self,
        stream_id: str,
        expected_version: int,
        tenant_id: str,
        events: Sequence[BaseModel],
        causation_id: str | None,
        correlation_id: str | None = None,
    ) -> int:
        envelopes = [
            new_envelope(
                self._registry,
                payload,
                stream_id=stream_id,
                stream_version=expected_version + i,
                tenant_id=tenant_id,
                producer=self._producer,
                correlation_id=correlation_id,
                causation_id=causation_id,
            )
            for i, payload in enumerate(events, start=1)
        ]
        try:
            commit = await self.store.append(stream_id, expected_version, envelopes)
        except ConcurrencyConflict as exc:
            raise StreamConflict(stream_id) from exc
        self.appends += 1
        return commit.last_version

    async def read_stream(self, stream_id: str) -> list[EventEnvelope]:
        return await self.store.read_stream(stream_id)

    async def open_runs(self) -> list[str]:
        started: list[str] = []
        completed: set[str] = set()
        async for commit in self.store.all_commits():
            if not commit.stream_id.startswith(EXPERIMENT_RUN_STREAM_PREFIX + ":"):
                continue
            if commit.first_version == 1:
                started.append(commit.stream_id)
            if any(e.event_type == "runs.ExperimentRunCompleted" for e in commit.events):
                completed.add(commit.stream_id)
        return [s for s in started if s not in completed]


class InMemoryRunRequests:
    def __init__(self) -> None:
        self.requests: dict[str, EventEnvelope] = {}

    async def save(self, stream_id: str, envelope: EventEnvelope) -> None:
        self.requests.setdefault(stream_id, envelope)

    async def get(self, stream_id: str) -> EventEnvelope | None:
        return self.requests.get(stream_id)


class ListExampleSource:
    """`ExampleSource` serving `rows` as the file `upload_id` of every dataset."""

    def __init__(self, rows: Sequence[dict[str, Any]], upload_id: str) -> None:
        self.rows = list(rows)
        self.upload_id = upload_id
        self.reads = 0

    async def iterate(
        self, tenant_id: str, dataset_id: str, upload_id: str
    ) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        self.reads += 1
        if upload_id != self.upload_id:
            raise ExperimentRunError(
                DATASET_CHANGED, f"dataset {dataset_id} holds file {self.upload_id}, not {upload_id}"
            )
        for index, row in enumerate(self.rows):
            yield index, dict(row)
