"""Experiment execution on real Kafka and MongoDB: a `registry.ExperimentStarted` published on the
registry topic runs through the consumer, reads its examples from a real HTTP server speaking the
registry's `/examples` format, and reports `runs.Experiment*` on the runs topic through the outbox;
a run killed mid-way resumes in a new process without scoring any example twice."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Header, HTTPException, Query
from pymongo import AsyncMongoClient

from ailab_contracts import REGISTRY, EventEnvelope, new_envelope, topics
from ailab_contracts.events.experiments import ExperimentStarted, experiment_stream
from ailab_contracts.events.runs import (
    ExperimentExampleScored,
    ExperimentRunCompleted,
    ExperimentRunStarted,
    experiment_run_stream,
)
from ailab_runtime.service import Runtime, ServiceSpec
from ailab_runtime.settings import ServiceSettings
from run_executor.experiments import (
    EXECUTOR_KEY,
    EXPERIMENTS_CONSUMER,
    ExperimentExecutor,
    RegistryExampleSource,
    TargetError,
    TargetResult,
    build_experiment_executor,
)
from tests.support.infra import Infra
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration

TOKEN = "it-internal-token"
UPLOAD = "upl_it_0001"


# --- a registry speaking the /examples format over real HTTP ----------------------------------------


@dataclass
class DatasetServer:
    base_url: str
    datasets: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    requests: int = 0


def registry_app(state: DatasetServer) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/tenants/{tenant_id}/datasets/{dataset_id}/examples")
    async def examples(
        tenant_id: str,
        dataset_id: str,
        limit: int = Query(50, ge=1, le=200),
        cursor: str | None = None,
        x_internal_token: str | None = Header(default=None),
    ) -> dict[str, Any]:
        state.requests += 1
        if x_internal_token != TOKEN:
            raise HTTPException(401)
        if (tenant_id, dataset_id) not in state.datasets:
            raise HTTPException(404)
        upload_id, rows = state.datasets[(tenant_id, dataset_id)]
        start = int(cursor.split(":")[1]) + 1 if cursor else 0
        stop = min(start + limit, len(rows))
        items = [{"index": i, "upload_id": upload_id, "data": rows[i]} for i in range(start, stop)]
        return {"items": items, "next_cursor": f"{upload_id}:{stop - 1}" if stop < len(rows) else None}

    return app


@pytest.fixture(scope="module")
async def dataset_server() -> AsyncIterator[DatasetServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    state = DatasetServer(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = uvicorn.Server(uvicorn.Config(registry_app(state), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while True:
        if server.started:
            break
        assert time.monotonic() < deadline, "the dataset server did not start"
        await asyncio.sleep(0.02)
    yield state
    server.should_exit = True
    await task


def rows(n: int) -> list[dict[str, Any]]:
    return [{"question": f"What is {i} + 1?", "i": i, "expected": str(i + 1)} for i in range(n)]


# --- a deterministic target ----------------------------------------------------------------------------


class FakeTarget:
    """Answers `i + 1` as text (wrong when i % 5 == 0: `i + 2`); fails when i % 25 == 24."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[int] = []

    async def run(
        self,
        tenant_id: str,
        target: Mapping[str, Any],
        inputs: Mapping[str, Any],
        parameters: Mapping[str, Any],
        cancel: asyncio.Event,
    ) -> TargetResult:
        assert "expected" not in inputs
        i = int(inputs["i"])
        self.calls.append(i)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if i % 25 == 24:
            return TargetResult(run_id=f"run_{i}", error=TargetError("provider_unavailable", "503"))
        answer = str(i + 2) if i % 5 == 0 else str(i + 1)
        return TargetResult(
            output={"text": answer},
            run_id=f"run_{i}",
            latency_ms=float(10 + i),
            tokens_in=12,
            tokens_out=1,
            cost_usd=Decimal("0.00001") * (i + 1),
        )


# --- the service under test ---------------------------------------------------------------------------


@dataclass
class Service:
    runtime: Runtime
    target: FakeTarget

    @property
    def executor(self) -> ExperimentExecutor:
        executor: ExperimentExecutor = self.runtime.extras[EXECUTOR_KEY]
        return executor


async def start_service(settings: ServiceSettings, base_url: str, target: FakeTarget) -> Service:
    def wire(runtime: Runtime) -> None:
        build_experiment_executor(
            runtime, target=target, source=RegistryExampleSource(base_url, TOKEN, backoff_s=0.05)
        )

    spec = ServiceSpec(
        name="run-executor",
        title="run-executor (experiments under test)",
        description="experiment execution only",
        consumers=[EXPERIMENTS_CONSUMER],
        wire=wire,
    )
    runtime = Runtime(spec, settings)
    await runtime.start()
    deadline = time.monotonic() + 60
    while True:
        if runtime.consumers:
            return Service(runtime, target)
        assert time.monotonic() < deadline, "the consumer did not start"
        await asyncio.sleep(0.05)


def settings_for(infra: Infra) -> ServiceSettings:
    return ServiceSettings(
        service_name="run-executor",
        mongodb_uri=infra.mongodb_uri,
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_database=infra.unique("test_rexp_"),
        topic_prefix=infra.unique("trexp") + ".",
        environment="test",
        internal_token=TOKEN,
    )


def started(
    tenant: str, experiment_id: str, count: int, *, concurrency: int = 8, run_number: int = 1
) -> EventEnvelope:
    event = ExperimentStarted.model_validate(
        {
            "experiment_id": experiment_id,
            "run_number": run_number,
            "target": {"type": "agent_version", "agent_id": "agt_it", "version": 1},
            "evaluators": [
                {"name": "exact", "type": "exact_match", "config": {}},
                {"name": "number", "type": "numeric_tolerance", "config": {"abs_tolerance": 0.5}},
            ],
            "parameters": {},
            "concurrency": concurrency,
            "expected_output_field": "expected",
            "dataset_id": "dst_it",
            "upload_id": UPLOAD,
            "example_count": count,
            "requested_by": "usr_it",
        }
    )
    return new_envelope(
        REGISTRY,
        event,
        stream_id=experiment_stream(tenant, experiment_id),
        stream_version=2,
        tenant_id=tenant,
        producer="agent-registry",
        correlation_id=f"req-{uuid.uuid4().hex[:8]}",
        causation_id="req",
    )


async def drop(settings: ServiceSettings) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
    try:
        await client.drop_database(settings.database_name)
    finally:
        await client.close()


async def publish(settings: ServiceSettings, envelope: EventEnvelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(topics.REGISTRY),
            value=json.dumps(envelope.to_wire()).encode(),
            key=envelope.tenant_id.encode(),
            headers=[("event_type", envelope.event_type.encode()), ("schema_version", b"1")],
        )
    finally:
        await producer.stop()


async def run_events(runtime: Runtime, envelope: EventEnvelope) -> list[EventEnvelope]:
    payload = envelope.payload
    return await runtime.store.read_stream(
        experiment_run_stream(envelope.tenant_id, payload["experiment_id"], payload["run_number"])
    )


async def wait_for(
    runtime: Runtime, envelope: EventEnvelope, predicate: Any, timeout_s: float = 90
) -> list[EventEnvelope]:
    deadline = time.monotonic() + timeout_s
    while True:
        events = await run_events(runtime, envelope)
        if predicate(events):
            return events
        assert time.monotonic() < deadline, f"timed out; {len(events)} events"
        await asyncio.sleep(0.02)


def completed(events: list[EventEnvelope]) -> bool:
    return bool(events) and events[-1].event_type == "runs.ExperimentRunCompleted"


def scored(events: list[EventEnvelope]) -> list[int]:
    return [e.payload["example_index"] for e in events if e.event_type == "runs.ExperimentExampleScored"]


async def topic_events(settings: ServiceSettings, stream_id: str, at_least: int) -> dict[str, dict[str, Any]]:
    """Events of `stream_id` on the runs topic, deduplicated by event_id."""
    deadline = time.monotonic() + 60
    while True:
        records = await read_topic(
            settings.kafka_bootstrap_servers, settings.topic(topics.RUNS), until=at_least, timeout_s=30
        )
        found: dict[str, dict[str, Any]] = {}
        for record in records:
            body = json.loads(record.value or b"{}")
            if body["stream_id"] == stream_id:
                found[body["event_id"]] = body
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


# --- the tests ----------------------------------------------------------------------------------------


async def test_an_experiment_started_on_kafka_is_run_and_reported_on_the_runs_topic(
    infra: Infra, dataset_server: DatasetServer
) -> None:
    settings = settings_for(infra)
    tenant = f"ten_{uuid.uuid4().hex[:8]}"
    dataset_server.datasets[(tenant, "dst_it")] = (UPLOAD, rows(100))
    service = await start_service(settings, dataset_server.base_url, FakeTarget())
    try:
        request = started(tenant, "exp_it_1", 100)
        await publish(settings, request)
        events = await wait_for(service.runtime, request, completed)
        stream_id = experiment_run_stream(tenant, "exp_it_1", 1)

        published = await topic_events(settings, stream_id, 102)
        kinds = [b["event_type"] for b in published.values()]
        assert kinds.count("runs.ExperimentRunStarted") == 1
        assert kinds.count("runs.ExperimentExampleScored") == 100
        assert kinds.count("runs.ExperimentRunCompleted") == 1
        assert {b["causation_id"] for b in published.values()} == {str(request.event_id)}
        assert {b["correlation_id"] for b in published.values()} == {request.correlation_id}
        assert {b["tenant_id"] for b in published.values()} == {tenant}
        assert sorted(b["stream_version"] for b in published.values()) == list(range(1, 103))
        indexes = [
            b["payload"]["example_index"]
            for b in published.values()
            if b["event_type"] == "runs.ExperimentExampleScored"
        ]
        assert sorted(indexes) == list(range(100))
        for body in published.values():  # every report parses with the contracts, as the registry does
            REGISTRY.parse(body)

        by_index = {
            e.payload["example_index"]: ExperimentExampleScored.model_validate(e.payload)
            for e in events
            if e.event_type == "runs.ExperimentExampleScored"
        }
        assert [s.passed for s in by_index[1].scores] == [True, True]
        assert [s.passed for s in by_index[5].scores] == [False, False]  # 7 vs 6: outside 0.5
        assert by_index[24].error is not None and by_index[24].error.code == "provider_unavailable"

        done = ExperimentRunCompleted.model_validate(events[-1].payload)
        failed = [i for i in range(100) if i % 25 == 24]
        ok = [i for i in range(100) if i not in failed]
        wrong = [i for i in ok if i % 5 == 0]
        assert done.status == "completed"
        assert (done.summary.examples_total, done.summary.examples_scored, done.summary.examples_failed) == (
            100,
            96,
            4,
        )
        assert done.summary.pass_rate == pytest.approx((96 - len(wrong)) / 96)
        assert done.summary.cost_total_usd == format(
            sum((Decimal("0.00001") * (i + 1) for i in ok), Decimal(0)).normalize(), "f"
        )
        # latency: the target's own for the 96, the executor's wall time for the 4 failed ones
        lat = sorted(r.latency_ms or 0.0 for r in by_index.values())
        assert [by_index[i].latency_ms for i in (0, 1)] == [10.0, 11.0]
        assert done.summary.latency_p50_ms == pytest.approx((lat[49] + lat[50]) / 2, abs=0.001)
        assert ExperimentRunStarted.model_validate(events[0].payload).example_count == 100
        assert sorted(service.target.calls) == list(range(100))

        # at-least-once: the same request again (same event id), then re-sent (new id): nothing happens
        consumer = service.runtime.consumers[0]
        duplicates, processed = consumer.duplicates, consumer.processed
        await publish(settings, request)
        await publish(settings, request.model_copy(update={"event_id": uuid.uuid4()}))
        deadline = time.monotonic() + 30
        while (consumer.duplicates, consumer.processed) != (duplicates + 1, processed + 1):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await service.executor.wait_idle(30)
        assert await run_events(service.runtime, request) == events
        assert len(service.target.calls) == 100
    finally:
        await service.runtime.stop()
        await drop(settings)


async def settle(settings: ServiceSettings, request: Any, quiet_s: float = 0.5) -> None:
    """Wait until the run's stream stops growing: the store state a restarted process would see."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
    try:
        commits = client[settings.database_name]["events"]
        payload = request.payload
        stream_id = experiment_run_stream(request.tenant_id, payload["experiment_id"], payload["run_number"])
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < quiet_s:
            count = await commits.count_documents({"stream_id": stream_id})
            if count != last:
                last, stable_since = count, time.monotonic()
            await asyncio.sleep(0.05)
    finally:
        await client.close()


async def stored_run_events(settings: ServiceSettings, request: Any) -> list[EventEnvelope]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    try:
        payload = request.payload
        stream_id = experiment_run_stream(request.tenant_id, payload["experiment_id"], payload["run_number"])
        events = client[settings.database_name]["events"]
        cursor = events.find({"stream_id": stream_id}).sort("stream_version", 1)
        return [EventEnvelope.model_validate(e) async for doc in cursor for e in doc["events"]]
    finally:
        await client.close()


async def test_a_run_killed_mid_way_resumes_after_a_restart_without_scoring_twice(
    infra: Infra, dataset_server: DatasetServer
) -> None:
    settings = settings_for(infra)
    tenant = f"ten_{uuid.uuid4().hex[:8]}"
    dataset_server.datasets[(tenant, "dst_it")] = (UPLOAD, rows(100))
    first = await start_service(settings, dataset_server.base_url, FakeTarget(delay_s=0.03))
    request = started(tenant, "exp_it_2", 100, concurrency=4)
    try:
        await publish(settings, request)
        await wait_for(first.runtime, request, lambda evs: len(scored(evs)) >= 40)
    finally:
        await first.runtime.stop()  # the process goes away mid-run
    await settle(settings, request)  # appends the dead process had already sent land (or not) first

    before = await stored_run_events(settings, request)  # what the restarted process will find
    second = await start_service(settings, dataset_server.base_url, FakeTarget())
    try:
        done_before = scored(before)
        assert 40 <= len(done_before) < 100 and not completed(before)
        events = await wait_for(second.runtime, request, completed)
        indexes = scored(events)
        assert sorted(indexes) == list(range(100)) and len(indexes) == len(set(indexes)) == 100
        assert sorted(second.target.calls) == sorted(set(range(100)) - set(done_before))
        assert [e.stream_version for e in events] == list(range(1, 103))
        assert ExperimentRunCompleted.model_validate(events[-1].payload).status == "completed"
        assert await second.executor.resume_open_runs() == 0  # completed runs are not open any more

        stream_id = experiment_run_stream(tenant, "exp_it_2", 1)
        published = await topic_events(settings, stream_id, 102)
        on_topic = [
            b["payload"]["example_index"]
            for b in published.values()
            if b["event_type"] == "runs.ExperimentExampleScored"
        ]
        assert sorted(on_topic) == list(range(100))  # each example once (after dedupe by event_id)
        assert {b["causation_id"] for b in published.values()} == {str(request.event_id)}
    finally:
        await second.runtime.stop()
        await drop(settings)


async def test_throughput_with_an_instant_target(
    infra: Infra, dataset_server: DatasetServer, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(infra)
    tenant = f"ten_{uuid.uuid4().hex[:8]}"
    count = 1000
    dataset_server.datasets[(tenant, "dst_it")] = (UPLOAD, rows(count))
    service = await start_service(settings, dataset_server.base_url, FakeTarget())
    try:
        request = started(tenant, "exp_it_3", count, concurrency=16)
        await publish(settings, request)
        events = await wait_for(service.runtime, request, completed, timeout_s=240)
        assert len(scored(events)) == count
        elapsed = (events[-1].occurred_at - events[0].occurred_at).total_seconds()
        stream_id = experiment_run_stream(tenant, "exp_it_3", 1)
        commits = await service.runtime.db["events"].count_documents({"stream_id": stream_id})
        with capsys.disabled():
            print(
                f"\n[experiments] MongoDB/FerretDB event store: {count} examples in {elapsed:.2f}s "
                f"= {count / elapsed:.0f} examples/s (concurrency 16, {commits} commits)"
            )
    finally:
        await service.runtime.stop()
        await drop(settings)
