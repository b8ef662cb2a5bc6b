"""Idempotent Kafka consumer: dedupe by event id, commit offsets after the effect, retry then DLQ.

Handlers must make their own effect idempotent (ledger or projection style, see ARCHITECTURE.md);
the `processed_events` marker written after a success skips the common redelivery cheaply.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from opentelemetry import context as otel_context
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope, EventRegistry

from .kafka import (
    DEFAULT_FETCH_MAX_WAIT_MS,
    dead_letter_headers,
    event_type_header,
    fetch_unless_stopped,
    new_group_consumer,
)
from .tracing import context_from_kafka, tracer

log = logging.getLogger(__name__)

Handler = Callable[[EventEnvelope, BaseModel], Awaitable[None]]


class IdempotentConsumer:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: list[str],
        group_id: str,
        handler: Handler,
        registry: EventRegistry,
        db: AsyncDatabase[dict[str, Any]],
        dlq_producer: AIOKafkaProducer,
        max_retries: int = 3,
        retry_backoff_s: float = 0.2,
        event_types: set[str] | None = None,
        fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
    ) -> None:
        self._topics = topics
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._group = group_id
        self._handler = handler
        self._registry = registry
        self._markers = db["processed_events"]
        self._dlq = dlq_producer
        self._retries = max_retries
        self._backoff = retry_backoff_s
        self._types = event_types
        self._bootstrap = bootstrap_servers
        self.processed = 0
        self.duplicates = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event) -> None:
        consumer = new_group_consumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await consumer.start()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                batches = await fetch_unless_stopped(consumer, stopping, max_records=500)
                if batches is None:
                    break
                for records in batches.values():
                    for record in records:
                        await self.handle(record)
                if batches:
                    await consumer.commit()  # only after every effect above is stored
        finally:
            stopping.cancel()
            await consumer.stop()

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if self._types is not None and not self._wanted_by_header(record):
            return  # skipped without parsing the body (topics like usage carry many other types)
        try:
            raw = json.loads(record.value or b"")
            if self._types is not None and raw.get("event_type") not in self._types:
                return
            envelope, payload = self._registry.parse(raw)
        except Exception as exc:  # noqa: BLE001 - unparseable messages go to the DLQ untouched
            await self._dead_letter(record, exc, attempts=0)
            return
        marker = f"{self._group}:{envelope.event_id}"
        if await self._markers.find_one({"_id": marker}, {"_id": 1}):
            self.duplicates += 1
            return
        token = otel_context.attach(context_from_kafka(record.headers))
        try:
            for attempt in range(1, self._retries + 1):
                try:
                    with tracer("ailab.consumer").start_as_current_span(f"consume {envelope.event_type}"):
                        await self._handler(envelope, payload)
                    break
                except Exception as exc:  # noqa: BLE001
                    if attempt == self._retries:
                        await self._dead_letter(record, exc, attempts=attempt)
                        return
                    log.warning("handler failed; retrying", extra={"fields": {"attempt": attempt}})
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        finally:
            otel_context.detach(token)
        try:
            await self._markers.insert_one({"_id": marker, "tenant_id": envelope.tenant_id})
        except DuplicateKeyError:
            self.duplicates += 1
            return
        self.processed += 1

    def _wanted_by_header(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """False only when the relay's `event_type` header names a type this consumer ignores."""
        assert self._types is not None
        event_type = event_type_header(record)
        return event_type is None or event_type in self._types  # no header: decided after parsing

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], exc: Exception, attempts: int) -> None:
        headers = dead_letter_headers(record, type(exc).__name__, str(exc), self._group) + [
            ("dlq.attempts", str(attempts).encode()),
        ]
        await self._dlq.send_and_wait(
            f"{record.topic}.dlq", value=record.value, key=record.key, headers=headers
        )
        self.dead_lettered += 1
        log.error(
            "message dead-lettered",
            extra={"fields": {"topic": record.topic, "offset": record.offset, "error": str(exc)[:200]}},
        )
