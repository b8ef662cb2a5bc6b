"""The outbox relay publishes a commit appended in its process at once (woken by the store), and
polls less and less often while nothing comes (commits of other processes are found by polling)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ailab_runtime.eventstore import InMemoryEventStore
from ailab_runtime.relay import OutboxRelay
from ailab_runtime.testing.eventstore_contract import created

pytestmark = pytest.mark.unit


class RecordingProducer:
    """Stands in for AIOKafkaProducer.send: records what would be produced, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: list[Any]) -> asyncio.Future[None]:
        self.sent.append((topic, key))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def eventually(probe: Any, what: str) -> None:
    for _ in range(200):
        if probe():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} never happened")


async def test_an_append_in_this_process_is_published_without_waiting_for_a_poll() -> None:
    store, producer = InMemoryEventStore(), RecordingProducer()
    # Polls so rare that only the wake-up can publish within the test.
    relay = OutboxRelay(store, producer, lambda _: "topic", poll_interval_s=60, idle_poll_max_s=60)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await eventually(lambda: relay.polls == 1, "the first poll")
    await store.append("s1", 0, [created("s1")])
    await eventually(lambda: relay.published_events == 1, "publishing the appended commit")
    assert producer.sent == [("topic", b"t1")] and await store.unpublished(10) == []
    stop.set()
    await asyncio.wait_for(task, 5)  # stop wakes it too


async def test_idle_polls_back_off_and_still_find_commits_of_other_processes() -> None:
    store, producer = InMemoryEventStore(), RecordingProducer()
    relay = OutboxRelay(store, producer, lambda _: "topic", poll_interval_s=0.01, idle_poll_max_s=0.16)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.8)
    # Without the back-off: 80 polls at 0.01 s. With it: 0.01 + 0.02 + 0.04 + 0.08, then every 0.16 s.
    assert relay.polls <= 12, relay.polls
    other_process = store._append_listeners.copy()
    store._append_listeners.clear()  # an append this relay is not told about
    await store.append("s2", 0, [created("s2")])
    store._append_listeners.extend(other_process)
    await eventually(lambda: relay.published_events == 1, "the poll finding the other process's commit")
    stop.set()
    await asyncio.wait_for(task, 5)
