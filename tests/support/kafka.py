"""Read a whole topic in tests: every record from the beginning up to the end offsets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


async def read_topic(
    bootstrap: str, topic: str, until: int, timeout_s: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from offset 0 up to its end offsets, waiting (bounded by the timeout)
    until at least `until` records exist."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        partitions: set[int] | None = None
        while not partitions and loop.time() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
                await asyncio.sleep(0.2)
        if not partitions:
            return records
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        while loop.time() < deadline:
            ends = await consumer.end_offsets(assigned)
            while loop.time() < deadline and [
                tp for tp in assigned if await consumer.position(tp) < ends[tp]
            ]:
                batch = await consumer.getmany(*assigned, timeout_ms=500)
                for recs in batch.values():
                    records.extend(recs)
            if len(records) >= until:
                break
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()
    return records


def event_ids(records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    out: list[str] = []
    for r in records:
        body: dict[str, Any] = json.loads(r.value or b"{}")
        out.append(body["event_id"])
    return out


async def read_events(
    bootstrap: str, topic: str, until: int, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """The decoded envelopes (JSON bodies) of every record of `topic`, read as `read_topic` does: tests
    assert on event types and payloads, not on raw records."""
    records = await read_topic(bootstrap, topic, until, timeout_s)
    return [json.loads(r.value or b"{}") for r in records]
