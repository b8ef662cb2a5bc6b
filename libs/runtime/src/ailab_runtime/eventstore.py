"""Event store = outbox: one MongoDB document per command ("commit") holding that command's events.

A unique index on (stream_id, stream_version) makes a second writer at the same expected version
fail with a duplicate key: that is the optimistic-concurrency conflict. Commits carry a global
`seq` so the relay and the projectors can process them in order, and two flags, `published`
(relay) and `projected` (read models), that the background loops clear.

Only inserts guarded by unique indexes are used for concurrency: FerretDB 1.24 runs an update as
read, modify in Go, write back by `_id`, so concurrent updates of one document (even `$inc` or a
compare-and-set filter) can silently lose writes. The sequence is therefore allocated by inserting
`{_id: n}` into `sequence` (a duplicate means another writer took n; take the next one), which
also keeps it increasing along each stream: a commit's number is allocated after the previous
commit of its stream is visible.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope


class ConcurrencyConflict(Exception):
    """Another command appended to the stream first (expected version is stale)."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id} moved past version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


@dataclass(frozen=True)
class Commit:
    commit_id: str
    stream_id: str
    tenant_id: str
    first_version: int
    last_version: int
    seq: int
    events: tuple[EventEnvelope, ...]
    trace_headers: dict[str, str] = field(default_factory=dict)
    published: bool = False
    projected: bool = False


class EventStore(Protocol):
    """Port: append commits with optimistic concurrency, read streams, feed relay and projectors."""

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[EventEnvelope],
        trace_headers: dict[str, str] | None = None,
    ) -> Commit: ...

    async def read_stream(self, stream_id: str) -> list[EventEnvelope]: ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def unpublished(self, limit: int) -> list[Commit]: ...

    def on_append(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every successful append made through this store (in this process)."""
        ...

    async def mark_published(self, commit_ids: Sequence[str]) -> None: ...

    async def unprojected(self, limit: int, older_than: timedelta) -> list[Commit]: ...

    async def mark_projected(self, commit_ids: Sequence[str]) -> None: ...

    def all_commits(self) -> AsyncIterator[Commit]: ...


def _check_events(stream_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
    if not events:
        raise ValueError("a commit needs at least one event")
    for offset, ev in enumerate(events, start=1):
        if ev.stream_id != stream_id or ev.stream_version != expected_version + offset:
            raise ValueError(
                f"event {ev.event_type} has stream {ev.stream_id} v{ev.stream_version}, "
                f"expected {stream_id} v{expected_version + offset}"
            )
    if len({ev.tenant_id for ev in events}) != 1:
        raise ValueError("all events of a commit belong to one tenant")


class MongoEventStore:
    """The real adapter. Collections: `events` (commits) and `counters` (global sequence)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], collection: str = "events") -> None:
        self._commits = db[collection]
        self._sequence = db[f"{collection}_sequence"]
        # The relay sets `published` and the projector `projected` on the same commit documents;
        # FerretDB would lose one of two concurrent updates, so this process makes them take turns.
        self._flags = asyncio.Lock()
        # Writers of this process take sequence numbers in turn from the last one they took, so
        # they do not race each other for the same number (one insert per commit); a number taken
        # by another process is a duplicate key, after which the current maximum is read again.
        self._seq_lock = asyncio.Lock()
        self._last_seq: int | None = None
        self._append_listeners: list[Callable[[], None]] = []

    def on_append(self, listener: Callable[[], None]) -> None:
        """The outbox relay of this process wakes up on an append instead of polling for it."""
        self._append_listeners.append(listener)

    async def ensure_indexes(self) -> None:
        await self._commits.create_index(
            [("stream_id", ASCENDING), ("stream_version", ASCENDING)], unique=True, name="stream_position"
        )
        await self._commits.create_index([("seq", ASCENDING)], name="seq")
        await self._commits.create_index([("published", ASCENDING), ("seq", ASCENDING)], name="outbox")
        await self._commits.create_index([("projected", ASCENDING), ("seq", ASCENDING)], name="projector")

    async def _next_seq(self) -> int:
        async with self._seq_lock:
            while True:
                if self._last_seq is None:
                    last = await self._sequence.find_one({}, sort=[("_id", -1)], projection={"_id": 1})
                    self._last_seq = int(last["_id"]) if last else 0
                candidate = self._last_seq + 1
                try:
                    await self._sequence.insert_one({"_id": candidate})
                except DuplicateKeyError:
                    self._last_seq = None  # another process took it: read the maximum again
                    continue
                self._last_seq = candidate
                return candidate

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[EventEnvelope],
        trace_headers: dict[str, str] | None = None,
    ) -> Commit:
        _check_events(stream_id, expected_version, events)
        seq = await self._next_seq()
        commit = Commit(
            commit_id=str(uuid.uuid4()),
            stream_id=stream_id,
            tenant_id=events[0].tenant_id,
            first_version=expected_version + 1,
            last_version=expected_version + len(events),
            seq=seq,
            events=tuple(events),
            trace_headers=dict(trace_headers or {}),
        )
        doc = {
            "_id": commit.commit_id,
            "stream_id": stream_id,
            "stream_version": commit.first_version,
            "last_version": commit.last_version,
            "tenant_id": commit.tenant_id,
            "seq": seq,
            "events": [ev.to_wire() for ev in events],
            "trace_headers": commit.trace_headers,
            "recorded_at": datetime.now(UTC),
            "published": False,
            "projected": False,
        }
        try:
            await self._commits.insert_one(doc)
        except DuplicateKeyError as exc:
            raise ConcurrencyConflict(stream_id, expected_version) from exc
        for listener in self._append_listeners:
            listener()
        return commit

    async def read_stream(self, stream_id: str) -> list[EventEnvelope]:
        cursor = self._commits.find({"stream_id": stream_id}).sort("stream_version", ASCENDING)
        return [EventEnvelope.model_validate(ev) async for doc in cursor for ev in doc["events"]]

    async def stream_version(self, stream_id: str) -> int:
        doc = await self._commits.find_one({"stream_id": stream_id}, sort=[("stream_version", -1)])
        return int(doc["last_version"]) if doc else 0

    async def unpublished(self, limit: int) -> list[Commit]:
        cursor = self._commits.find({"published": False}).sort("seq", ASCENDING).limit(limit)
        return [_to_commit(doc) async for doc in cursor]

    async def mark_published(self, commit_ids: Sequence[str]) -> None:
        if commit_ids:
            async with self._flags:
                await self._commits.update_many(
                    {"_id": {"$in": list(commit_ids)}},
                    {"$set": {"published": True, "published_at": datetime.now(UTC)}},
                )

    async def unprojected(self, limit: int, older_than: timedelta) -> list[Commit]:
        cutoff = datetime.now(UTC) - older_than
        cursor = (
            self._commits.find({"projected": False, "recorded_at": {"$lte": cutoff}})
            .sort("seq", ASCENDING)
            .limit(limit)
        )
        return [_to_commit(doc) async for doc in cursor]

    async def mark_projected(self, commit_ids: Sequence[str]) -> None:
        if commit_ids:
            async with self._flags:
                await self._commits.update_many(
                    {"_id": {"$in": list(commit_ids)}}, {"$set": {"projected": True}}
                )

    async def all_commits(self) -> AsyncIterator[Commit]:
        async for doc in self._commits.find({}).sort("seq", ASCENDING):
            yield _to_commit(doc)


def _to_commit(doc: dict[str, Any]) -> Commit:
    return Commit(
        commit_id=doc["_id"],
        stream_id=doc["stream_id"],
        tenant_id=doc["tenant_id"],
        first_version=doc["stream_version"],
        last_version=doc["last_version"],
        seq=doc["seq"],
        events=tuple(EventEnvelope.model_validate(ev) for ev in doc["events"]),
        trace_headers=doc.get("trace_headers") or {},
        published=doc["published"],
        projected=doc["projected"],
    )


class InMemoryEventStore:
    """Fake for unit tests of pure logic; the shared contract test runs it beside MongoEventStore."""

    def __init__(self) -> None:
        self._commits: list[Commit] = []
        self._recorded: dict[str, datetime] = {}
        self._append_listeners: list[Callable[[], None]] = []

    def on_append(self, listener: Callable[[], None]) -> None:
        self._append_listeners.append(listener)

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[EventEnvelope],
        trace_headers: dict[str, str] | None = None,
    ) -> Commit:
        _check_events(stream_id, expected_version, events)
        if any(c.stream_id == stream_id and c.first_version == expected_version + 1 for c in self._commits):
            raise ConcurrencyConflict(stream_id, expected_version)
        commit = Commit(
            commit_id=str(uuid.uuid4()),
            stream_id=stream_id,
            tenant_id=events[0].tenant_id,
            first_version=expected_version + 1,
            last_version=expected_version + len(events),
            seq=len(self._commits) + 1,
            events=tuple(events),
            trace_headers=dict(trace_headers or {}),
        )
        self._commits.append(commit)
        self._recorded[commit.commit_id] = datetime.now(UTC)
        for listener in self._append_listeners:
            listener()
        return commit

    async def read_stream(self, stream_id: str) -> list[EventEnvelope]:
        commits = sorted(
            (c for c in self._commits if c.stream_id == stream_id), key=lambda c: c.first_version
        )
        return [ev for c in commits for ev in c.events]

    async def stream_version(self, stream_id: str) -> int:
        versions = [c.last_version for c in self._commits if c.stream_id == stream_id]
        return max(versions, default=0)

    async def unpublished(self, limit: int) -> list[Commit]:
        return [c for c in self._commits if not c.published][:limit]

    async def mark_published(self, commit_ids: Sequence[str]) -> None:
        self._replace(commit_ids, published=True)

    async def unprojected(self, limit: int, older_than: timedelta) -> list[Commit]:
        cutoff = datetime.now(UTC) - older_than
        return [c for c in self._commits if not c.projected and self._recorded[c.commit_id] <= cutoff][:limit]

    async def mark_projected(self, commit_ids: Sequence[str]) -> None:
        self._replace(commit_ids, projected=True)

    async def all_commits(self) -> AsyncIterator[Commit]:
        for c in list(self._commits):
            yield c

    def _replace(self, commit_ids: Sequence[str], **changes: bool) -> None:
        ids = set(commit_ids)
        self._commits = [
            Commit(**{**c.__dict__, **changes}) if c.commit_id in ids else c for c in self._commits
        ]
