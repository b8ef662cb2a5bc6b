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
    ) -> None:
        self._store = store
        self._producer = producer
        self._topic_for = topic_for
        self._poll = poll_interval_s
        self._batch = batch_size
        self.published_events = 0

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
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                relayed = await self.publish_once()
            except Exception:
                log.exception("relay batch failed; retrying")
                relayed = 0
                await asyncio.sleep(1.0)
            if not relayed:
                try:
                    await asyncio.wait_for(stop.wait(), self._poll)
                except TimeoutError:
                    pass


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
