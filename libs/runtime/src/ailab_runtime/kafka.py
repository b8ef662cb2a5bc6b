"""Kafka wiring on aiokafka: an acks=all idempotent producer, topic creation, and a readiness probe."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


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
