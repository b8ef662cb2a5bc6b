"""Read models built from the event store.

A stream is projected by reading its events past the stream's projection position and applying
them in order, under a per-stream lock: writes of one stream's views have a single writer in the
process (FerretDB cannot be trusted with concurrent updates of one document, see eventstore.py),
and a commit whose inline projection was skipped or overtaken is applied in order anyway. This
runs inline after each append (read-your-writes), in a background catch-up loop for commits a
crash left unprojected, and from scratch on `rebuild-projections`.

Each projection must also be idempotent: view documents keep the stream version they reflect
(`_version`) and an update applies only when `_version` is lower (see views.apply_versioned), so a
crash between applying and saving the position re-applies harmlessly.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from ailab_contracts import EventEnvelope, EventRegistry

from .eventstore import Commit, EventStore
from .mongo_server import delete_matching

log = logging.getLogger(__name__)


class Projection(Protocol):
    name: str

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None: ...

    async def reset(self) -> None: ...


class PositionStore(Protocol):
    async def get(self, stream_id: str) -> int: ...

    async def set(self, stream_id: str, version: int) -> None: ...

    async def clear(self) -> None: ...


class MongoPositionStore:
    def __init__(self, collection: Any) -> None:
        self._col = collection

    async def get(self, stream_id: str) -> int:
        doc = await self._col.find_one({"_id": stream_id})
        return int(doc["version"]) if doc else 0

    async def set(self, stream_id: str, version: int) -> None:
        await self._col.update_one({"_id": stream_id}, {"$set": {"version": version}}, upsert=True)

    async def clear(self) -> None:
        await delete_matching(self._col, {})


class InMemoryPositionStore:
    def __init__(self) -> None:
        self._positions: dict[str, int] = {}

    async def get(self, stream_id: str) -> int:
        return self._positions.get(stream_id, 0)

    async def set(self, stream_id: str, version: int) -> None:
        self._positions[stream_id] = version

    async def clear(self) -> None:
        self._positions.clear()


class Projector:
    def __init__(
        self,
        store: EventStore,
        registry: EventRegistry,
        projections: Sequence[Projection],
        positions: PositionStore,
    ) -> None:
        self._store = store
        self._registry = registry
        self._projections = list(projections)
        self._positions = positions
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Commits projected inline, marked `projected` in one write per flush instead of one each
        # (a crash before the flush only makes catch-up look at them again: positions make that a
        # no-op).
        self._projected: list[str] = []

    def _lock(self, stream_id: str) -> asyncio.Lock:
        lock = self._locks.get(stream_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[stream_id] = lock
        return lock

    async def project_stream(self, stream_id: str) -> int:
        """Apply every event of the stream past its position; returns how many were applied."""
        if not self._projections:
            return 0
        lock = self._lock(stream_id)
        async with lock:
            position = await self._positions.get(stream_id)
            events = [e for e in await self._store.read_stream(stream_id) if e.stream_version > position]
            for raw in events:
                await self._apply_event(raw)
            if events:
                await self._positions.set(stream_id, events[-1].stream_version)
            return len(events)

    async def _apply_event(self, raw: EventEnvelope) -> None:
        envelope, event = self._registry.parse(raw.to_wire())
        for projection in self._projections:
            await projection.apply(envelope, event)

    async def apply_commit(self, commit: Commit) -> None:
        """Project a commit just appended (read-your-writes); marked projected by the next flush."""
        await self._project_commit(commit)
        self._projected.append(commit.commit_id)

    async def _project_commit(self, commit: Commit) -> None:
        if not self._projections:
            return
        async with self._lock(commit.stream_id):
            position = await self._positions.get(commit.stream_id)
            if position >= commit.last_version:
                return
            if position == commit.first_version - 1:
                # The usual case: the stream's projection is right behind this commit, whose events
                # are at hand (no need to read the stream back).
                for raw in commit.events:
                    await self._apply_event(raw)
                await self._positions.set(commit.stream_id, commit.last_version)
                return
        await self.project_stream(commit.stream_id)  # behind by more: catch the stream up in order

    async def flush_marks(self) -> int:
        """Mark the commits projected inline since the last flush; returns how many."""
        batch, self._projected = self._projected, []
        if batch:
            try:
                await self._store.mark_projected(batch)
            except BaseException:
                self._projected = batch + self._projected
                raise
        return len(batch)

    async def catch_up(self, older_than: timedelta = timedelta(seconds=2)) -> int:
        commits = await self._store.unprojected(500, older_than)
        for stream_id in dict.fromkeys(c.stream_id for c in commits):
            await self.project_stream(stream_id)
        await self._store.mark_projected([c.commit_id for c in commits])
        return len(commits)

    async def rebuild(self) -> int:
        """Drop every view and replay the whole event store in order; returns events applied."""
        for projection in self._projections:
            await projection.reset()
        await self._positions.clear()
        count = 0
        positions: dict[str, int] = {}
        batch: list[str] = []
        async for commit in self._store.all_commits():
            for raw in commit.events:
                await self._apply_event(raw)
            count += len(commit.events)
            positions[commit.stream_id] = commit.last_version
            batch.append(commit.commit_id)
            if len(batch) >= 500:
                await self._store.mark_projected(batch)
                batch = []
        await self._store.mark_projected(batch)
        for stream_id, version in positions.items():
            await self._positions.set(stream_id, version)
        return count

    async def run_catch_up(
        self, stop: asyncio.Event, interval_s: float = 1.0, flush_interval_s: float = 0.2
    ) -> None:
        """Flush inline marks every `flush_interval_s`; catch up on unprojected commits every
        `interval_s`."""
        loop = asyncio.get_running_loop()
        next_catch_up = loop.time()
        while not stop.is_set():
            try:
                await self.flush_marks()
                if loop.time() >= next_catch_up:
                    await self.catch_up()
                    next_catch_up = loop.time() + interval_s
            except Exception:
                log.exception("projection catch-up failed")
            try:
                await asyncio.wait_for(stop.wait(), flush_interval_s)
            except TimeoutError:
                pass
        await self.flush_marks()
