"""Kafka wiring on aiokafka: an acks=all idempotent producer, consumers' fetch defaults and a fetch
that a stop request interrupts, topic creation, and a readiness probe."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)

# How long the broker holds a consumer's fetch while none of its partitions has new records (it answers
# as soon as one does). aiokafka's 500 ms made every idle consumer ask twice a second (10 idle consumers:
# Kafka 7.6-8.0 % of a core; 3.2-4.1 % at 2 s, and no less at 5 s). The price: the broker answers one
# connection's requests in order, so after a rebalance a consumer reads the partitions it gained only
# when its held fetch ends (measured: 4 s late at 5 s, 0.1 s at 500 ms).
DEFAULT_FETCH_MAX_WAIT_MS = 2000
# How often an idle consumer's fetch routine (aiokafka's consumer_timeout_ms, 200 ms by default) and
# the runtime consumer's loop (its getmany timeout, 200 ms before) wake up without news.
IDLE_WAKE_MS = 1000


def event_type_header(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The relay's `event_type` header, when the record has one: lets a consumer skip types it
    ignores without parsing the value."""
    for key, value in record.headers or ():
        if key == "event_type":
            return value.decode(errors="replace")
    return None


def dead_letter_headers(
    record: ConsumerRecord[bytes, bytes], error_type: str, message: str, group: str
) -> list[tuple[str, bytes]]:
    """The record's own headers plus the `dlq.*` ones every dead letter carries."""
    return list(record.headers or []) + [
        ("dlq.error.type", error_type.encode()),
        ("dlq.error.message", message[:1000].encode()),
        ("dlq.original.topic", record.topic.encode()),
        ("dlq.original.partition", str(record.partition).encode()),
        ("dlq.original.offset", str(record.offset).encode()),
        ("dlq.consumer.group", group.encode()),
    ]


def new_producer(bootstrap_servers: str, client_id: str) -> AIOKafkaProducer:
    # acks=all + idempotence: an acknowledged event is on every in-sync replica, never duplicated by retries.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1024 * 1024,
        request_timeout_ms=30000,
    )


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


def new_group_consumer(
    *topics: str,
    bootstrap_servers: str,
    group_id: str,
    fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
    consumer_timeout_ms: int = IDLE_WAKE_MS,
    **options: Any,
) -> AIOKafkaConsumer:
    """A consumer in `group_id` that commits offsets itself (after the effect), starts a new group at
    the earliest record, and wakes rarely while idle; `options` go to aiokafka as they are."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        consumer_timeout_ms=consumer_timeout_ms,
        **options,
    )


async def fetch_unless_stopped(
    consumer: AIOKafkaConsumer, stopping: asyncio.Future[Any], max_records: int
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] | None:
    """`getmany` (waiting up to IDLE_WAKE_MS), or None as soon as `stopping` is done: the wait is
    cancelled before it handed anything out (records not handed out are fetched again by whoever
    consumes next). After None, stop the consumer: the cancelled wait leaves aiokafka's fetcher state
    behind, which its stop clears."""
    fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=IDLE_WAKE_MS, max_records=max_records))
    try:
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not fetch.done():  # stopping won, or this caller is being cancelled: no orphan fetch left
            fetch.cancel()
            await asyncio.wait({fetch})  # never raises fetch's cancellation; the caller's still does
    return None if fetch.cancelled() else fetch.result()


async def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # a sibling service created it first
            log.info("topics created", extra={"fields": {"topics": missing}})
    finally:
        await admin.close()


async def kafka_ready(producer: AIOKafkaProducer, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout_s)
        return True
    except Exception:  # noqa: BLE001 - any failure means not ready
        return False
