"""Outbox relay: publishes unpublished commits in `seq` order with acks=all, then marks them.

A crash between publish and mark republishes those events on restart (at-least-once); consumers
dedupe by `event_id`. Run it inside a service, or alone: `python -m ailab_runtime.relay --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from .eventstore import Commit, EventStore
from .kafka import encode

log = logging.getLogger(__name__)

TopicFor = Callable[[str], str]


def topic_by_context(prefix: str = "") -> TopicFor:
    """`registry.AgentCreated` -> `<prefix>ailab.registry.events`."""
    return lambda event_type: f"{prefix}ailab.{event_type.split('.', 1)[0]}.events"


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        producer: AIOKafkaProducer,
        topic_for: TopicFor,
        poll_interval_s: float = 0.05,
        batch_size: int = 500,
        idle_poll_max_s: float = 1.0,
    ) -> None:
        self._store = store
        self._producer = producer
        self._topic_for = topic_for
        self._poll = poll_interval_s
        self._idle_max = max(idle_poll_max_s, poll_interval_s)
        self._batch = batch_size
        self._wake = asyncio.Event()
        self.published_events = 0
        self.polls = 0
        # Commits appended in this process wake the relay at once; the polls, slower the longer
        # nothing comes, are for commits other processes append to the same store.
        store.on_append(self.wake)

    def wake(self) -> None:
        """Publish now: a commit was appended (in this process)."""
        self._wake.set()

    async def publish_once(self) -> int:
        """Publish one batch; returns how many commits were relayed."""
        commits = await self._store.unpublished(self._batch)
        if not commits:
            return 0
        futures = []
        for commit in commits:
            futures.extend(await self._send(commit))
        await asyncio.gather(*futures)  # every send acknowledged by all in-sync replicas
        await self._store.mark_published([c.commit_id for c in commits])
        self.published_events += sum(len(c.events) for c in commits)
        return len(commits)

    async def _send(self, commit: Commit) -> list[asyncio.Future[object]]:
        futures = []
        for ev in commit.events:
            headers = {
                **commit.trace_headers,
                "event_type": ev.event_type,
                "schema_version": str(ev.schema_version),
                "event_id": str(ev.event_id),
            }
            futures.append(
                await self._producer.send(
                    self._topic_for(ev.event_type),
                    value=encode(ev.to_wire()),
                    key=ev.tenant_id.encode(),
                    headers=[(k, v.encode()) for k, v in headers.items()],
                )
            )
        return futures

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until `stop`. After an empty poll the relay waits for a wake-up, `stop`, or the
        next poll, which doubles from poll_interval_s up to idle_poll_max_s while nothing comes
        (an idle system made each service query its outbox 20 times a second)."""
        stop = stop or asyncio.Event()
        delay = self._poll
        while not stop.is_set():
            self._wake.clear()  # before reading: an append from now on is not missed
            self.polls += 1
            try:
                relayed = await self.publish_once()
            except Exception:
                log.exception("relay batch failed; retrying")
                relayed = 0
                await asyncio.sleep(1.0)
            if relayed:
                delay = self._poll
                continue
            if await _first_of(self._wake, stop, delay):
                delay = self._poll
            else:
                delay = min(delay * 2, self._idle_max)


async def _first_of(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> bool:
    """Wait until either event is set or `seconds` pass; True if one was set."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


async def _main(args: argparse.Namespace) -> None:
    from pymongo import AsyncMongoClient

    from .eventstore import MongoEventStore
    from .kafka import new_producer

    client: AsyncMongoClient = AsyncMongoClient(args.mongodb_uri, tz_aware=True)
    store = MongoEventStore(client[args.database])
    producer = new_producer(args.kafka, "relay")
    await producer.start()
    try:
        await OutboxRelay(store, producer, topic_by_context(args.topic_prefix), batch_size=args.batch).run()
    finally:
        await producer.stop()
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ailab_runtime.relay", description=__doc__)
    parser.add_argument("--mongodb-uri", default="mongodb://127.0.0.1:27017/")
    parser.add_argument("--database", required=True, help="the service database holding `events`")
    parser.add_argument("--kafka", default="127.0.0.1:9092", help="bootstrap servers")
    parser.add_argument("--topic-prefix", default="")
    parser.add_argument("--batch", type=int, default=500, help="commits per batch")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
