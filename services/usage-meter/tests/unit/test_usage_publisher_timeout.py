"""The bulk API's records go to the usage topic as `usage.UsageBatchRecorded`, keyed by tenant; the
wait for Kafka is bounded: a broker that does not acknowledge becomes KafkaUnavailable (503
`kafka_unavailable`, retry with the same ids) before the gateway gives up."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from ailab_contracts.topics import USAGE
from usage_meter.adapters.runtime_io import KafkaUnavailable, KafkaUsagePublisher

pytestmark = pytest.mark.unit


class SilentProducer:
    """Takes records and never acknowledges them (a broker that is up but not answering)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, topic: str, **_: Any) -> asyncio.Future[None]:
        self.sent += 1
        return asyncio.get_running_loop().create_future()


class AcknowledgingProducer:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def send(self, topic: str, **record: Any) -> asyncio.Future[None]:
        self.records.append({"topic": topic, **record})
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_records_carry_the_batch_event_type_headers_and_the_tenant_key() -> None:
    producer = AcknowledgingProducer()
    runtime = SimpleNamespace(producer=producer, settings=SimpleNamespace(topic=lambda name: f"t.{name}"))
    await KafkaUsagePublisher(runtime).publish_all([(b"acme", b"{1}"), (b"acme", b"{2}")])  # type: ignore[arg-type]
    assert producer.records == [
        {
            "topic": f"t.{USAGE}",
            "key": b"acme",
            "value": value,
            "headers": [("event_type", b"usage.UsageBatchRecorded"), ("schema_version", b"1")],
        }
        for value in (b"{1}", b"{2}")
    ]


async def test_an_unacknowledged_publish_times_out_as_kafka_unavailable() -> None:
    producer = SilentProducer()
    runtime = SimpleNamespace(producer=producer, settings=SimpleNamespace(topic=lambda name: name))
    publisher = KafkaUsagePublisher(runtime, timeout_s=0.05)  # type: ignore[arg-type]
    with pytest.raises(KafkaUnavailable, match="did not acknowledge"):
        await publisher.publish_all([(b"acme", b"{}"), (b"acme", b"{}")])
    assert producer.sent == 2


async def test_no_producer_yet_is_kafka_unavailable() -> None:
    runtime = SimpleNamespace(producer=None, settings=SimpleNamespace(topic=lambda name: name))
    with pytest.raises(KafkaUnavailable):
        await KafkaUsagePublisher(runtime).publish_all([(b"acme", b"{}")])  # type: ignore[arg-type]
