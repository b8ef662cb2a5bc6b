from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def read_topic(
    bootstrap: str, topic: str, until: int, timeout_s: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning, once at least `until` arrived (or the timeout)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < until and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
        # drain what is still in flight so duplicates are counted too
        batch = await consumer.getmany(timeout_ms=1000)
        for recs in batch.values():
            records.extend(recs)
    finally:
        await consumer.stop()
    return records


def event_ids(records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
    out: list[str] = []
    for r in records:
        body: dict[str, Any] = json.loads(r.value or b"{}")
        out.append(body["event_id"])
    return out
