"""Fault tests on real Kafka and FerretDB: the usage-meter runs as its own process, is SIGKILLed
mid-stream (twice) and restarted, and — in a separate opt-in test — the Kafka broker itself is
restarted under load. Afterwards every aggregate document must equal a recomputation from the
distinct events produced: zero difference."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pymongo import AsyncMongoClient

from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.usage import UsageBatchRecorded, UsageRecorded
from ailab_runtime.kafka import encode, ensure_topics
from tests.support.infra import Infra
from usage_meter.adapters.mongo_store import AGGREGATES, LEDGER
from usage_meter.domain.model import Sheet, UsageEntry, comparable, recompute

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[4]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MeterProcess:
    """`python -m usage_meter serve` in its own process (killable with SIGKILL)."""

    def __init__(self, infra: Infra, database: str, prefix: str, log: Path) -> None:
        self.env = {
            **os.environ,
            "MONGODB_URI": infra.mongodb_uri,
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
            "MONGODB_DATABASE": database,
            "TOPIC_PREFIX": prefix,
            "ENVIRONMENT": "test",
            # Small batches: a kill lands between ledger and aggregate writes.
            "CONSUMER_MAX_RECORDS": "200",
            "CONSUMER_MAX_EVENTS": "300",
            "LOG_LEVEL": "WARNING",
            "CONSUMER_SESSION_TIMEOUT_MS": "6000",  # the broker's minimum: a killed member leaves sooner
            "PORT": str(free_port()),
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "usage_meter", "serve"], env=self.env, stdout=out, stderr=out, cwd=REPO
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def make_events(count: int, seed: int) -> tuple[list[UsageEntry], list[bytes], list[str]]:
    """`count` distinct events over 6 tenants, today and yesterday, and the log to produce: about half
    the events one per record (`usage.UsageRecorded`, as run-executor sends them), the others in
    `usage.UsageBatchRecorded` records of 2-40 (as the bulk API sends them); every record once plus
    ~15 % republished copies, shuffled (reordered) within the run."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    tenants = [f"ten_{uuid.uuid4().hex[:8]}" for _ in range(6)]
    by_tenant: dict[str, list[tuple[str, UsageRecorded]]] = {t: [] for t in tenants}
    distinct: list[UsageEntry] = []
    for _ in range(count):
        tenant = rng.choice(tenants)
        meter = rng.choice(["requests", "tokens_in", "tokens_out", "storage_mb"])
        event = UsageRecorded(
            tenant_id=tenant,
            user_id=rng.choice(["u1", "u2", "u3", "u4"]),
            project_id=rng.choice([None, "p1", "p2"]),
            agent_id=rng.choice([None, "a1", "a2"]),
            meter=meter,  # type: ignore[arg-type]
            quantity=Decimal(rng.randint(-20 if meter == "storage_mb" else 0, 4000)) / 100,
            cost_usd_estimate=rng.choice([None, Decimal(rng.randint(0, 10**6)) / 10**6]),
            provider=rng.choice(["openai", "anthropic"]),
            model=rng.choice(["gpt-4o", "gpt-4.1", "claude-3.5"]),
            request_id="req",
            timestamp=now - timedelta(minutes=rng.randint(0, 60 * 30)),
        )
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        by_tenant[tenant].append((event_id, event))
        distinct.append(
            UsageEntry(
                event_id=event_id,
                tenant_id=tenant,
                user_id=event.user_id,
                meter=meter,
                quantity=event.quantity,
                cost=event.cost_usd_estimate,
                timestamp=event.timestamp,
                provider=event.provider,
                model=event.model,
                project_id=event.project_id,
                agent_id=event.agent_id,
            )
        )
    messages: list[tuple[str, bytes]] = []
    for tenant, events in by_tenant.items():
        while events:
            size = 1 if rng.random() < 0.5 else rng.randint(2, 40)
            group, events = events[:size], events[size:]
            messages.append((tenant, record(tenant, group)))
    messages += rng.sample(messages, len(messages) * 15 // 100)
    rng.shuffle(messages)
    return distinct, [m for _, m in messages], [t for t, _ in messages]


def record(tenant: str, events: list[tuple[str, UsageRecorded]]) -> bytes:
    """One Kafka record value: a single event's envelope, or a batch of several."""
    if len(events) == 1:
        event_id, event = events[0]
        envelope = new_envelope(
            REGISTRY, event, stream_id=f"run:{tenant}", stream_version=1, tenant_id=tenant, producer="test"
        )
        return encode({**envelope.to_wire(), "event_id": event_id})
    batch = UsageBatchRecorded.model_validate(
        {
            "tenant_id": tenant,
            "events": [{**e.model_dump(mode="json"), "event_id": event_id} for event_id, e in events],
        }
    )
    envelope = new_envelope(
        REGISTRY, batch, stream_id=f"usage-bulk:{tenant}", stream_version=1, tenant_id=tenant, producer="test"
    )
    return encode(envelope.to_wire())


async def produce(
    bootstrap: str, topic: str, values: list[bytes], keys: list[str], pace_s: float = 0
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for start in range(0, len(values), 500):
            futures = [
                await producer.send(topic, value=v, key=k.encode())
                for v, k in zip(values[start : start + 500], keys[start : start + 500], strict=True)
            ]
            await asyncio.gather(*futures)
            if pace_s:
                await asyncio.sleep(pace_s)
    finally:
        await producer.stop()


async def committed_all(bootstrap: str, group: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        return False  # e.g. no group coordinator yet, just after the broker restarted: ask again
    finally:
        await admin.close()
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([tp for tp in offsets if tp.topic == topic])
        # aiokafka's group-less coordinator raises CancelledError from stop() if its background
        # task has not run yet; let it start first.
        await asyncio.sleep(0.01)
    finally:
        await consumer.stop()
    return bool(ends) and all(offsets[tp].offset >= end for tp, end in ends.items())


async def ledger_count(db: Any) -> int:
    return int(await db[LEDGER].count_documents({}))


async def wait_until(probe: Any, timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, f"{what} never happened"
        await asyncio.sleep(0.2)


async def assert_aggregates_equal_truth(db: Any, distinct: list[UsageEntry]) -> None:
    truth = recompute(distinct)
    stored = {i: a async for d in db[AGGREGATES].find({}) for i, a in Sheet.from_doc(d).aggregates.items()}
    assert set(stored) == set(truth), "aggregate documents differ"
    diff = [k for k, v in truth.items() if comparable(stored[k]) != comparable(v)]
    assert diff == [], f"{len(diff)} aggregates differ from the ground truth, e.g. {diff[:3]}"
    assert await ledger_count(db) == len(distinct)


@pytest.fixture
async def fault_setup(infra: Infra, tmp_path: Path) -> AsyncIterator[tuple[MeterProcess, Any, str, str]]:
    database = infra.unique("test_usage_fault_")
    prefix = infra.unique("tufault") + "."
    await ensure_topics(
        infra.kafka_bootstrap_servers, [f"{prefix}ailab.usage.events", f"{prefix}ailab.usage.events.dlq"]
    )
    process = MeterProcess(infra, database, prefix, tmp_path / "usage-meter.log")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    try:
        yield process, client[database], prefix, f"{prefix}usage-meter.ledger"
    finally:
        process.stop()
        await client.drop_database(database)
        await client.close()


async def test_sigkill_mid_stream_twice_leaves_every_aggregate_equal_to_ground_truth(
    infra: Infra, fault_setup: tuple[MeterProcess, Any, str, str]
) -> None:
    process, db, prefix, group = fault_setup
    topic = f"{prefix}ailab.usage.events"
    distinct, values, keys = make_events(3000, seed=5)
    await produce(infra.kafka_bootstrap_servers, topic, values, keys)
    process.start()
    for threshold in (700, 1900):
        await wait_until(lambda t=threshold: _ledger_at_least(db, t), 120, f"{threshold} ledger entries")
        process.kill()  # mid-stream: batches of 200, so ledger and aggregates are mid-write
        process.start()
    await wait_until(
        lambda: committed_all(infra.kafka_bootstrap_servers, group, topic), 180, "all offsets committed"
    )
    assert process.kills == 2
    await assert_aggregates_equal_truth(db, distinct)


async def _ledger_at_least(db: Any, count: int) -> bool:
    return await ledger_count(db) >= count


@pytest.mark.skipif(
    os.environ.get("USAGE_FAULT_KAFKA_RESTART") != "1" or not os.environ.get("AILAB_DATA_DIR"),
    reason="restarts the Kafka broker of the stack in AILAB_DATA_DIR (opt in: USAGE_FAULT_KAFKA_RESTART=1)",
)
async def test_broker_restart_and_sigkill_under_load_leave_aggregates_equal_to_ground_truth(
    infra: Infra, fault_setup: tuple[MeterProcess, Any, str, str]
) -> None:
    process, db, prefix, group = fault_setup
    topic = f"{prefix}ailab.usage.events"
    distinct, values, keys = make_events(6000, seed=11)
    half = len(values) // 2
    await produce(infra.kafka_bootstrap_servers, topic, values[:half], keys[:half])
    process.start()
    await wait_until(lambda: _ledger_at_least(db, 1500), 120, "1500 ledger entries")
    await asyncio.to_thread(restart_kafka)
    await wait_until(lambda: _ledger_at_least(db, 2500), 180, "progress after the broker restart")
    process.kill()
    process.start()
    await produce(infra.kafka_bootstrap_servers, topic, values[half:], keys[half:])
    await wait_until(
        lambda: committed_all(infra.kafka_bootstrap_servers, group, topic), 240, "all offsets committed"
    )
    await assert_aggregates_equal_truth(db, distinct)


def restart_kafka() -> None:
    data = Path(os.environ["AILAB_DATA_DIR"])
    pid = int((data / "run" / "kafka.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    for _ in range(600):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        import time

        time.sleep(0.1)
    subprocess.run(["bash", "scripts/infra/up.sh"], cwd=REPO, check=True, capture_output=True, timeout=300)
