"""One contract for every EventStore adapter: the in-memory fake and MongoEventStore must agree."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ailab_contracts import REGISTRY, EventEnvelope, new_envelope
from ailab_contracts.events.registry import ProjectCreated, ProjectUpdated
from ailab_runtime.eventstore import ConcurrencyConflict, EventStore


def created(stream: str, version: int = 1, tenant: str = "t1") -> EventEnvelope:
    return new_envelope(
        REGISTRY,
        ProjectCreated(project_id=stream, name="p", created_by="u"),
        stream_id=stream,
        stream_version=version,
        tenant_id=tenant,
        producer="test",
    )


def updated(stream: str, version: int, tenant: str = "t1") -> EventEnvelope:
    return new_envelope(
        REGISTRY,
        ProjectUpdated(project_id=stream, name=f"v{version}", updated_by="u"),
        stream_id=stream,
        stream_version=version,
        tenant_id=tenant,
        producer="test",
    )


class EventStoreContract:
    """Subclass and provide an `event_store` fixture."""

    async def test_append_and_read_back_in_order(self, event_store: EventStore) -> None:
        await event_store.append("s1", 0, [created("s1")])
        await event_store.append("s1", 1, [updated("s1", 2), updated("s1", 3)])
        events = await event_store.read_stream("s1")
        assert [e.stream_version for e in events] == [1, 2, 3]
        assert await event_store.stream_version("s1") == 3
        assert await event_store.stream_version("missing") == 0

    async def test_stale_expected_version_conflicts(self, event_store: EventStore) -> None:
        await event_store.append("s2", 0, [created("s2")])
        with pytest.raises(ConcurrencyConflict):
            await event_store.append("s2", 0, [created("s2")])
        assert len(await event_store.read_stream("s2")) == 1

    async def test_versions_must_follow_expected(self, event_store: EventStore) -> None:
        with pytest.raises(ValueError):
            await event_store.append("s3", 0, [updated("s3", 2)])
        with pytest.raises(ValueError):
            await event_store.append("s3", 0, [])

    async def test_concurrent_appends_have_one_winner(self, event_store: EventStore) -> None:
        await event_store.append("s4", 0, [created("s4")])
        results = await asyncio.gather(
            *(event_store.append("s4", 1, [updated("s4", 2)]) for _ in range(10)), return_exceptions=True
        )
        assert sum(not isinstance(r, Exception) for r in results) == 1
        assert all(isinstance(r, ConcurrencyConflict) for r in results if isinstance(r, Exception))

    async def test_outbox_flags(self, event_store: EventStore) -> None:
        c1 = await event_store.append("s5", 0, [created("s5")])
        c2 = await event_store.append("s5", 1, [updated("s5", 2)])
        pending = [c.commit_id for c in await event_store.unpublished(1000)]
        assert pending.index(c1.commit_id) < pending.index(c2.commit_id)
        await event_store.mark_published([c1.commit_id])
        pending = [c.commit_id for c in await event_store.unpublished(1000)]
        assert c1.commit_id not in pending and c2.commit_id in pending
        unprojected = [c.commit_id for c in await event_store.unprojected(1000, timedelta(0))]
        assert c1.commit_id in unprojected
        await event_store.mark_projected([c1.commit_id, c2.commit_id])
        unprojected = [c.commit_id for c in await event_store.unprojected(1000, timedelta(0))]
        assert c1.commit_id not in unprojected
        seqs = [c.seq async for c in event_store.all_commits()]
        assert seqs == sorted(seqs)

    async def test_append_listeners_hear_each_successful_append(self, event_store: EventStore) -> None:
        heard: list[int] = []
        event_store.on_append(lambda: heard.append(1))
        await event_store.append("s-listen", 0, [created("s-listen")])
        with pytest.raises(ConcurrencyConflict):
            await event_store.append("s-listen", 0, [created("s-listen")])
        assert heard == [1]  # the conflicting append stored nothing, so nobody is woken
