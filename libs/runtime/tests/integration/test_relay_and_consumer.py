"""Outbox relay and idempotent consumer against real Kafka and MongoDB.

The relay is run as its own process and SIGKILLed mid-stream; after a restart every event is on
the topic (some twice: at-least-once), and a consumer applies each exactly once. Poison records go
to the DLQ; a long fetch wait at the broker delays neither a new record nor a consumer's stop, and
after a rebalance it delays the partitions a consumer gained by at most that wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import REGISTRY, EventEnvelope
from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from ailab_runtime.consumer import IdempotentConsumer
from ailab_runtime.eventstore import MongoEventStore
from ailab_runtime.kafka import ensure_topics, new_producer
from ailab_runtime.testing.eventstore_contract import created
from tests.support.infra import Infra
from tests.support.kafka import event_ids, read_topic

pytestmark = pytest.mark.integration


def start_relay(infra: Infra, database: str, prefix: str, batch: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ailab_runtime.relay",
            "--mongodb-uri",
            infra.mongodb_uri,
            "--database",
            database,
            "--kafka",
            infra.kafka_bootstrap_servers,
            "--topic-prefix",
            prefix,
            "--batch",
            str(batch),
        ],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def new_consumer(
    infra: Infra,
    db: AsyncDatabase[dict[str, Any]],
    topic: str,
    handler: Any,
    producer: AIOKafkaProducer,
    group_id: str | None = None,
    **options: Any,
) -> IdempotentConsumer:
    """A consumer of `topic`, in a group of its own unless `group_id` is given."""
    return IdempotentConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers,
        topics=[topic],
        group_id=group_id or infra.unique("g"),
        handler=handler,
        registry=REGISTRY,
        db=db,
        dlq_producer=producer,
        **options,
    )


async def wait_for(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def test_relay_survives_sigkill_and_consumer_applies_exactly_once(
    infra: Infra, db: AsyncDatabase[dict[str, Any]]
) -> None:
    prefix = infra.unique("t") + "."
    topic = prefix + REGISTRY_TOPIC
    await ensure_topics(infra.kafka_bootstrap_servers, [topic, topic + ".dlq"])
    store = MongoEventStore(db)
    await store.ensure_indexes()
    total = 600
    appended: list[str] = []
    for i in range(total):
        env = created(f"project:t:{i}", tenant=f"tenant{i % 7}")
        await store.append(env.stream_id, 0, [env])
        appended.append(str(env.event_id))
    commits = db["events"]

    relay = start_relay(infra, db.name, prefix, batch=50)
    try:
        await wait_for(lambda: _published_at_least(commits, 150))
        relay.send_signal(signal.SIGKILL)  # mid-stream: some batches sent but not yet marked
        relay.wait(10)
        published_before_restart = await commits.count_documents({"published": True})
        assert published_before_restart < total, "the relay was killed before it finished"
        relay = start_relay(infra, db.name, prefix, batch=50)
        await wait_for(lambda: _published_at_least(commits, total), timeout_s=120)
    finally:
        relay.kill()
        relay.wait(10)

    records = await read_topic(infra.kafka_bootstrap_servers, topic, until=total)
    delivered = event_ids(records)
    assert set(delivered) == set(appended), "every event delivered"
    # per stream order: each tenant's events keep their append order on the partition
    for record in records:
        assert record.key is not None and record.key.decode() == json.loads(record.value or b"")["tenant_id"]

    # A consumer with a non-idempotent effect ($inc) still applies each event exactly once.
    counts = db["applied"]

    async def handler(envelope: EventEnvelope, event: BaseModel) -> None:
        await counts.update_one({"_id": str(envelope.event_id)}, {"$inc": {"n": 1}}, upsert=True)

    producer = new_producer(infra.kafka_bootstrap_servers, "test-dlq")
    await producer.start()
    try:
        consumer = new_consumer(infra, db, topic, handler, producer)
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        await wait_for(lambda: _count_at_least(counts, total), timeout_s=120)
        await asyncio.sleep(1.0)  # let duplicates, if any, arrive
        stop.set()
        await task
    finally:
        await producer.stop()
    assert await counts.count_documents({}) == total
    assert await counts.count_documents({"n": {"$ne": 1}}) == 0
    assert consumer.processed == total
    assert consumer.duplicates == len(delivered) - total


async def test_poison_messages_go_to_dlq_and_consumer_moves_on(
    infra: Infra, db: AsyncDatabase[dict[str, Any]]
) -> None:
    topic = infra.unique("dlqtest.")
    await ensure_topics(infra.kafka_bootstrap_servers, [topic, topic + ".dlq"], partitions=1)
    good = created("project:t:good")
    bad = created("project:t:bad")
    producer: AIOKafkaProducer = new_producer(infra.kafka_bootstrap_servers, "test")
    await producer.start()
    handled: list[str] = []

    async def handler(envelope: EventEnvelope, event: BaseModel) -> None:
        if envelope.stream_id == "project:t:bad":
            raise RuntimeError("boom")
        handled.append(envelope.stream_id)

    try:
        await producer.send_and_wait(topic, b"{not json", key=b"t1")
        await producer.send_and_wait(topic, json.dumps(bad.to_wire()).encode(), key=b"t1")
        await producer.send_and_wait(topic, json.dumps(good.to_wire()).encode(), key=b"t1")
        consumer = new_consumer(infra, db, topic, handler, producer, max_retries=2, retry_backoff_s=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))

        async def good_done() -> bool:
            return handled == ["project:t:good"]

        await wait_for(good_done)
        stop.set()
        await task
    finally:
        await producer.stop()
    dead = await read_topic(infra.kafka_bootstrap_servers, topic + ".dlq", until=2)
    assert len(dead) == 2
    headers = [dict(r.headers) for r in dead]
    assert {h["dlq.error.type"] for h in headers} == {b"JSONDecodeError", b"RuntimeError"}
    assert all(h["dlq.original.topic"] == topic.encode() for h in headers)
    assert headers[1]["dlq.attempts"] == b"2"
    assert consumer.dead_lettered == 2


async def _published_at_least(commits: Any, n: int) -> bool:
    return bool(await commits.count_documents({"published": True}) >= n)


async def _count_at_least(col: Any, n: int) -> bool:
    return bool(await col.count_documents({}) >= n)


async def send(producer: AIOKafkaProducer, topic: str, stream_id: str, partition: int | None = None) -> None:
    event = created(stream_id)
    await producer.send_and_wait(topic, json.dumps(event.to_wire()).encode(), key=b"t1", partition=partition)


async def test_a_long_fetch_wait_delays_neither_a_new_record_nor_a_stop(
    infra: Infra, db: AsyncDatabase[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker holds an idle consumer's fetch for up to fetch_max_wait_ms but answers as soon as a
    record arrives; a stop request ends the consumer's wait at once (not when its getmany times out)."""
    monkeypatch.setattr("ailab_runtime.kafka.IDLE_WAKE_MS", 30_000)  # only the stop can end a wait early
    topic = infra.unique("fetchwait.")
    await ensure_topics(infra.kafka_bootstrap_servers, [topic], partitions=1)
    handled: list[str] = []

    async def handler(envelope: EventEnvelope, event: BaseModel) -> None:
        handled.append(envelope.stream_id)

    producer: AIOKafkaProducer = new_producer(infra.kafka_bootstrap_servers, "test")
    await producer.start()
    try:
        stop = asyncio.Event()
        consumer = new_consumer(infra, db, topic, handler, producer, fetch_max_wait_ms=10_000)
        task = asyncio.create_task(consumer.run(stop))
        try:
            await send(producer, topic, "project:t:first")
            await wait_for(lambda: _handled(handled, 1))  # joined and reading
            await asyncio.sleep(1.0)  # now idle: its next fetch is held at the broker
            sent = asyncio.get_running_loop().time()
            await send(producer, topic, "project:t:second")
            await wait_for(lambda: _handled(handled, 2))
            waited = asyncio.get_running_loop().time() - sent
            await asyncio.sleep(1.0)  # idle again, inside a 30 s getmany
        finally:
            stop_asked = asyncio.get_running_loop().time()
            stop.set()
            await task
        stopped_after = asyncio.get_running_loop().time() - stop_asked
    finally:
        await producer.stop()
    assert handled == ["project:t:first", "project:t:second"]
    assert waited < 5, waited  # waiting out the held fetch would take up to 10 s
    assert stopped_after < 10, stopped_after  # waiting out the getmany would take up to 30 s


async def test_after_a_member_leaves_the_other_reads_the_partitions_it_gained_within_a_few_seconds(
    infra: Infra, db: AsyncDatabase[dict[str, Any]]
) -> None:
    """Two members share 4 partitions; one stops. The broker answers a connection's requests in order,
    so the survivor's fetch for the partitions it gained waits behind its held one: records there are
    read late by up to the fetch wait (3 s here) plus the rebalance (the survivor hears of it at its
    next heartbeat, ≤ 3 s), never lost or stuck until a request timeout (40 s)."""
    topic = infra.unique("rebalance.")
    await ensure_topics(infra.kafka_bootstrap_servers, [topic], partitions=4)
    group = infra.unique("g")
    handled: list[list[str]] = [[], []]

    def handler_of(member: int) -> Any:
        async def handler(envelope: EventEnvelope, event: BaseModel) -> None:
            handled[member].append(envelope.stream_id)

        return handler

    producer: AIOKafkaProducer = new_producer(infra.kafka_bootstrap_servers, "test")
    await producer.start()
    try:
        stops = [asyncio.Event(), asyncio.Event()]
        consumers = [
            new_consumer(infra, db, topic, handler_of(m), producer, group, fetch_max_wait_ms=3000)
            for m in (0, 1)
        ]
        tasks = [asyncio.create_task(c.run(stop)) for c, stop in zip(consumers, stops, strict=True)]
        try:
            # Until both hold partitions: a record per partition, repeated until each member read one.
            round_ = 0
            while not (handled[0] and handled[1]):
                for partition in range(4):
                    await send(producer, topic, f"project:t:warm{round_}-{partition}", partition)
                round_ += 1
                await asyncio.sleep(2.0)
                assert round_ < 30, "the two members never shared the partitions"
            await asyncio.sleep(1.0)  # both idle, their fetches held
            stops[1].set()
            await tasks[1]
            sent = asyncio.get_running_loop().time()
            for partition in range(4):
                await send(producer, topic, f"project:t:after-{partition}", partition)

            def after() -> list[str]:
                return sorted(s for s in handled[0] if s.startswith("project:t:after-"))

            async def survivor_read_all() -> bool:
                return len(after()) >= 4

            await wait_for(survivor_read_all, timeout_s=60)
            waited = asyncio.get_running_loop().time() - sent
        finally:
            for stop in stops:
                stop.set()
            errors = [e for e in await asyncio.gather(*tasks, return_exceptions=True) if e is not None]
        assert not errors, errors
    finally:
        await producer.stop()
    assert after() == [f"project:t:after-{p}" for p in range(4)]
    assert waited < 12, waited  # ≤ 3 s heartbeat + 3 s held fetch + the rejoin, with room for a slow machine


async def _handled(handled: list[str], n: int) -> bool:
    return len(handled) >= n
