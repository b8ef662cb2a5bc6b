"""The single writer of one experiment run's stream.

Examples finish concurrently, but a stream's versions must be consecutive and each append names the
version it expects. So every event of a run goes through one queue and one task, which appends what
is waiting as one commit (up to `max_batch` events) at the version it knows.

Its view of the stream is always complete: it read the stream when the run was opened and every
append it made succeeded at the version it expected (the event store refuses any other). When an
append conflicts (another process writes the same run, e.g. after a redelivery to another instance)
or fails in an unknown way (a timeout may have written it), it re-reads the stream and retries
without the examples that are now in it, so the stream never holds an example twice; a run that
another writer completed raises `RunClosed` to everyone waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from ailab_contracts import EventEnvelope, EventRegistry
from ailab_contracts.events.runs import ExperimentExampleScored, ExperimentRunCompleted, ExperimentRunStarted

from .ports import EventRecorder, StreamConflict, StreamReader

log = logging.getLogger(__name__)


class RunClosed(Exception):
    """The run's stream already holds `runs.ExperimentRunCompleted`: nothing more may be written."""


@dataclass
class RunState:
    """What a run's stream holds: its version, start, completion and one result per example index."""

    version: int = 0
    started: ExperimentRunStarted | None = None
    completed: ExperimentRunCompleted | None = None
    results: dict[int, ExperimentExampleScored] = field(default_factory=dict)

    def apply(self, event: BaseModel) -> None:
        self.version += 1
        if isinstance(event, ExperimentRunStarted):
            self.started = self.started or event
        elif isinstance(event, ExperimentExampleScored):
            self.results.setdefault(event.example_index, event)
        elif isinstance(event, ExperimentRunCompleted):
            self.completed = self.completed or event


def fold_run(envelopes: Sequence[EventEnvelope], registry: EventRegistry) -> RunState:
    state = RunState()
    for envelope in envelopes:
        event = registry.parse_payload(envelope.event_type, envelope.schema_version, envelope.payload)
        state.apply(event)
        state.version = envelope.stream_version
    return state


FinalEvent = Callable[[RunState], ExperimentRunCompleted]


@dataclass
class _Item:
    event: BaseModel | None
    final: FinalEvent | None
    done: asyncio.Future[bool]


_STOP = object()


class RunStreamWriter:
    def __init__(
        self,
        recorder: EventRecorder,
        reader: StreamReader,
        registry: EventRegistry,
        *,
        stream_id: str,
        tenant_id: str,
        causation_id: str | None,
        correlation_id: str | None,
        state: RunState,
        max_batch: int = 50,
        max_attempts: int = 8,
        retry_backoff_s: float = 0.2,
    ) -> None:
        self.stream_id = stream_id
        self.state = state
        self._recorder = recorder
        self._reader = reader
        self._registry = registry
        self._tenant_id = tenant_id
        self._causation_id = causation_id
        self._correlation_id = correlation_id
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._backoff = retry_backoff_s
        self._queue: asyncio.Queue[_Item | object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"writer {self.stream_id}")

    async def write(self, event: BaseModel) -> bool:
        """Append `event` (after everything written before it); False when it was dropped because
        the stream already has it (the run's start, or a result for the same example index)."""
        return await self._submit(_Item(event, None, asyncio.get_running_loop().create_future()))

    async def finish(self, build: FinalEvent) -> bool:
        """Append the run's completion, built from the stream's state at the moment of writing (so
        its summary counts every result the stream holds); raises `RunClosed` if already completed."""
        return await self._submit(_Item(None, build, asyncio.get_running_loop().create_future()))

    async def _submit(self, item: _Item) -> bool:
        self.start()
        await self._queue.put(item)
        return await item.done

    async def close(self) -> None:
        """Stop after what is queued; idempotent."""
        if self._task is None:
            return
        if not self._task.done():
            await self._queue.put(_STOP)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # --- the loop --------------------------------------------------------------------------------
    async def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Item)
            batch = [first]
            # a completion is written alone, after everything queued before it
            while first.final is None and len(batch) < self._max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is _STOP:
                    stopping = True
                    break
                assert isinstance(nxt, _Item)
                if nxt.final is not None:
                    await self._append(batch)
                    batch = [nxt]
                    break
                batch.append(nxt)
            await self._append(batch)

    def _keep(self, batch: list[_Item]) -> list[_Item]:
        """The items still to write; the others are answered (dropped or closed) here."""
        keep: list[_Item] = []
        indexes: set[int] = set()
        for item in batch:
            if item.done.done():
                continue
            if self.state.completed is not None:
                item.done.set_exception(RunClosed(self.stream_id))
                continue
            event = item.event
            duplicate = (isinstance(event, ExperimentRunStarted) and self.state.started is not None) or (
                isinstance(event, ExperimentExampleScored)
                and (event.example_index in self.state.results or event.example_index in indexes)
            )
            if duplicate:
                item.done.set_result(False)
                continue
            if isinstance(event, ExperimentExampleScored):
                indexes.add(event.example_index)
            keep.append(item)
        return keep

    async def _append(self, batch: list[_Item]) -> None:
        failures = 0
        while True:
            keep = self._keep(batch)
            if not keep:
                return
            events = [item.final(self.state) if item.final else item.event for item in keep]
            try:
                version = await self._recorder.record(
                    self.stream_id,
                    self.state.version,
                    self._tenant_id,
                    [e for e in events if e is not None],
                    self._causation_id,
                    self._correlation_id,
                )
            except StreamConflict:
                failures += 1
                log.info("run stream moved; re-reading", extra={"fields": {"stream_id": self.stream_id}})
                if await self._refresh_or_fail(keep, failures, None):
                    return
                continue
            except Exception as exc:  # noqa: BLE001 - unknown outcome: re-read, then retry
                failures += 1
                log.warning(
                    "run stream append failed; retrying",
                    extra={"fields": {"stream_id": self.stream_id, "error": str(exc)[:200]}},
                )
                await asyncio.sleep(min(self._backoff * 2 ** (failures - 1), 5.0))
                if await self._refresh_or_fail(keep, failures, exc):
                    return
                for item, event in zip(keep, events, strict=True):
                    if item.final is not None and event == self.state.completed and not item.done.done():
                        item.done.set_result(True)  # it was written after all
                continue
            for event in events:
                if event is not None:
                    self.state.apply(event)
            self.state.version = version
            self.commits += 1
            for item in keep:
                if not item.done.done():
                    item.done.set_result(True)
            return

    async def _refresh_or_fail(self, keep: list[_Item], failures: int, error: Exception | None) -> bool:
        """Re-read the stream; True when the items were answered with an error instead."""
        if failures < self._max_attempts:
            try:
                self.state_from(await self._reader.read_stream(self.stream_id))
                return False
            except Exception as exc:  # noqa: BLE001
                error = exc
        final = error or RuntimeError(f"{self.stream_id}: {failures} conflicting appends in a row")
        for item in keep:
            if not item.done.done():
                item.done.set_exception(final)
        return True

    def state_from(self, envelopes: Sequence[EventEnvelope]) -> None:
        fresh = fold_run(envelopes, self._registry)
        self.state.version = fresh.version
        self.state.started = fresh.started
        self.state.completed = fresh.completed
        self.state.results = fresh.results
