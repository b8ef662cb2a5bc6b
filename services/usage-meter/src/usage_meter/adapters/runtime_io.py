"""Adapters on the shared runtime: appending events to the outbox, producing bulk usage to Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ailab_contracts.topics import USAGE
from ailab_runtime.errors import ApiError
from ailab_runtime.service import Runtime

from ..application.bulk import USAGE_BATCH_RECORDED, USAGE_BATCH_RECORDED_VERSION


class RuntimeRecorder:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def record_once(
        self, stream_id: str, expected_version: int, tenant_id: str, event: BaseModel
    ) -> bool:
        try:
            await self._runtime.record(
                stream_id=stream_id, expected_version=expected_version, tenant_id=tenant_id, events=[event]
            )
            return True
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise

    async def last_event(self, stream_id: str) -> tuple[int, dict[str, Any] | None]:
        events = await self._runtime.store.read_stream(stream_id)
        if not events:
            return 0, None
        return events[-1].stream_version, dict(events[-1].payload)


class KafkaUnavailable(Exception):
    pass


class KafkaUsagePublisher:
    """Produces the bulk API's `usage.UsageBatchRecorded` records on the shared acks=all idempotent
    producer (its max_request_size is aiokafka's default 1 MiB: bulk.MAX_RECORD_BYTES stays below)."""

    def __init__(self, runtime: Runtime, timeout_s: float = 10.0) -> None:
        self._runtime = runtime
        # Below the gateway's upstream timeout: the client hears 503 "retry with the same ids" (the
        # ids make a retry safe even if some events did reach Kafka) instead of a gateway 504.
        self._timeout_s = timeout_s

    async def publish_all(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        try:
            await asyncio.wait_for(self._publish(messages), self._timeout_s)
        except TimeoutError as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {self._timeout_s} s") from exc

    async def _publish(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        producer = self._runtime.producer
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka yet")
        topic = self._runtime.settings.topic(USAGE)
        headers = [
            ("event_type", USAGE_BATCH_RECORDED.encode()),
            ("schema_version", str(USAGE_BATCH_RECORDED_VERSION).encode()),
        ]
        try:
            futures = [
                await producer.send(topic, value=value, key=key, headers=headers) for key, value in messages
            ]
            await asyncio.gather(*futures)
        except Exception as exc:
            raise KafkaUnavailable(str(exc)) from exc
