"""An experiment run end to end on real Kafka and MongoDB: start -> `pending`; the run-executor's
`runs.*` events (published here with aiokafka, with a duplicate delivery, a re-send, and events out
of order) -> `running` -> `completed` with the summary; each example's result exactly once; a second
run with its own status; tenant isolation; rebuilt registry-side views equal the inline ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from ailab_contracts import REGISTRY, EventEnvelope, new_envelope
from ailab_contracts.events.runs import (
    ExperimentExampleScored,
    ExperimentRunCompleted,
    ExperimentRunStarted,
    experiment_run_stream,
)
from ailab_contracts.topics import RUNS as RUNS_TOPIC
from ailab_runtime.kafka import encode
from tests.support.service_app import eventually, wait_until_ready

from .conftest import Registry

pytestmark = pytest.mark.integration

EVALUATORS = [
    {"name": "exact", "type": "exact_match", "config": {"case_sensitive": False}},
    {"name": "label", "type": "regex", "config": {"pattern": "^(billing|tech)$"}},
]
T0 = datetime(2026, 11, 27, 12, 0, 0, 250_000, tzinfo=UTC)


async def publish(registry: Registry, envelopes: list[EventEnvelope]) -> None:
    """Publish as the run-executor's relay does: on the prefixed runs topic, keyed by tenant."""
    producer = AIOKafkaProducer(bootstrap_servers=registry.settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(
                registry.settings.topic(RUNS_TOPIC),
                value=encode(envelope.to_wire()),
                key=envelope.tenant_id.encode(),
                headers=[
                    ("event_type", envelope.event_type.encode()),
                    ("event_id", str(envelope.event_id).encode()),
                ],
            )
    finally:
        await producer.stop()


class Executor:
    """Builds the envelopes the run-executor records for one run (stream versions in order)."""

    def __init__(self, tenant: str, experiment_id: str, run_number: int) -> None:
        self.tenant, self.experiment_id, self.run_number = tenant, experiment_id, run_number

    def envelope(self, payload: BaseModel, stream_version: int) -> EventEnvelope:
        return new_envelope(
            REGISTRY,
            payload,
            stream_id=experiment_run_stream(self.tenant, self.experiment_id, self.run_number),
            stream_version=stream_version,
            tenant_id=self.tenant,
            producer="run-executor",
        )

    def started(self, count: int) -> EventEnvelope:
        payload = ExperimentRunStarted(
            experiment_id=self.experiment_id, run_number=self.run_number, started_at=T0, example_count=count
        )
        return self.envelope(payload, 1)

    def scored(self, index: int, output: Any, passed: bool = True, error: bool = False) -> EventEnvelope:
        score = 1.0 if passed else 0.0
        payload = ExperimentExampleScored.model_validate(
            {
                "experiment_id": self.experiment_id,
                "run_number": self.run_number,
                "example_index": index,
                "run_id": None if error else f"run_{index}",
                "output": None if error else output,
                "scores": []
                if error
                else [
                    {"evaluator": e["name"], "score": score, "passed": passed, "detail": None}
                    for e in EVALUATORS
                ],
                "latency_ms": None if error else 100.0 * (index + 1),
                "tokens_in": 0 if error else 10,
                "tokens_out": 0 if error else 2,
                "cost_usd": None if error else "0.0001",
                "error": {"code": "provider_timeout", "message": "timed out after 30 s"} if error else None,
            }
        )
        return self.envelope(payload, index + 2)

    def completed(self, summary: dict[str, Any], stream_version: int) -> EventEnvelope:
        payload = ExperimentRunCompleted.model_validate(
            {
                "experiment_id": self.experiment_id,
                "run_number": self.run_number,
                "status": "completed",
                "summary": summary,
                "error": None,
                "completed_at": T0 + timedelta(seconds=30),
            }
        )
        return self.envelope(payload, stream_version)


async def seed(registry: Registry, tenant: str, rows: int) -> dict[str, Any]:
    agent = await registry.agent(tenant)
    await registry.version(tenant, agent["id"])
    dataset_id = f"dst_{tenant}"
    await registry.runtime.db["datasets"].insert_one(
        {
            "_id": dataset_id,
            "tenant_id": tenant,
            "status": "active",
            "row_count": rows,
            "upload_id": f"upl_{tenant}",
            "content_sha256": "ab" * 32,
        }
    )
    return {
        "name": "Triage accuracy",
        "target": {"type": "agent_version", "agent_id": agent["id"], "version": 1},
        "dataset_id": dataset_id,
        "evaluators": EVALUATORS,
    }


SUMMARY = {
    "examples_total": 5,
    "examples_scored": 4,
    "examples_failed": 1,
    "pass_rate": 0.75,
    "mean_score": 0.75,
    "evaluators": [
        {"evaluator": "exact", "pass_rate": 0.75, "mean_score": 0.75},
        {"evaluator": "label", "pass_rate": 0.75, "mean_score": 0.75},
    ],
    "latency_p50_ms": 200.0,
    "latency_p95_ms": 500.0,
    "latency_p99_ms": 500.0,
    "cost_total_usd": "0.0004",
    "cost_p50_usd": "0.0001",
    "cost_p95_usd": "0.0001",
}


async def test_a_run_goes_pending_running_completed_with_each_result_once(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    tenant = registry.tenant()
    body = await seed(registry, tenant, rows=5)
    base = f"/v1/tenants/{tenant}/experiments"
    experiment = await registry.create(base, body)
    sentinel = await registry.create(base, {**body, "name": "Sentinel"})
    path = f"{base}/{experiment['id']}"

    async def status(run: int | None = None) -> dict[str, Any]:
        response = await registry.client.get(f"{path}/status", params={"run": run} if run else None)
        assert response.status_code == 200, response.text
        payload: dict[str, Any] = response.json()
        return payload

    started = await registry.client.post(f"{path}/start")
    assert started.status_code == 202 and started.json()["status"] == "pending"
    assert (await status())["status"] == "pending"

    run1 = Executor(tenant, experiment["id"], 1)
    first_start = run1.started(count=5)
    scored = {i: run1.scored(i, "billing" if i != 1 else "tech", passed=i != 0) for i in (0, 1, 2, 4)}
    scored[3] = run1.scored(3, None, error=True)

    # out of order: a result before the executor's start report -> already running
    await publish(registry, [scored[4]])
    early = await eventually(status, lambda s: s["examples_scored"] == 1, interval_s=0.2)
    assert (early["status"], early["started_at"], early["examples_total"]) == ("running", None, 5)

    resent = run1.scored(2, "a different output", passed=False)  # a re-send under a new event id
    await publish(registry, [first_start, scored[0], scored[1], scored[1], scored[2], resent, scored[3]])
    running = await eventually(
        status, lambda s: s["examples_scored"] + s["examples_failed"] == 5, interval_s=0.2
    )
    assert (running["status"], running["examples_scored"], running["examples_failed"]) == ("running", 4, 1)
    assert running["started_at"] == "2026-11-27T12:00:00.250000Z" and running["summary"] is None

    # completed, then a late start report of the same run (new event id, older stream position):
    # the status must not move back to running
    late_start = run1.started(count=5)
    await publish(registry, [run1.completed(SUMMARY, stream_version=7), late_start, first_start])
    sentinel_path = f"{base}/{sentinel['id']}"
    await registry.client.post(f"{sentinel_path}/start")
    await publish(registry, [Executor(tenant, sentinel["id"], 1).started(count=5)])  # same partition, after

    async def sentinel_status() -> dict[str, Any]:
        response: dict[str, Any] = (await registry.client.get(f"{sentinel_path}/status")).json()
        return response

    await eventually(sentinel_status, lambda s: s["status"] == "running", interval_s=0.2)
    done = await status()
    assert done == {
        "experiment_id": experiment["id"],
        "run_number": 1,
        "status": "completed",
        "examples_total": 5,
        "examples_scored": 4,
        "examples_failed": 1,
        "requested_at": started.json()["requested_at"],
        "requested_by": "usr_test",
        "started_at": "2026-11-27T12:00:00.250000Z",
        "completed_at": "2026-11-27T12:00:30.250000Z",
        "summary": SUMMARY,
        "error": None,
    }
    assert (done["summary"]["examples_scored"], done["summary"]["examples_failed"]) == (
        done["examples_scored"],
        done["examples_failed"],
    )

    results = (await registry.client.get(f"{path}/results")).json()
    assert (results["run_number"], results["status"], results["summary"], results["next_cursor"]) == (
        1,
        "completed",
        SUMMARY,
        None,
    )
    assert [r["example_index"] for r in results["items"]] == [0, 1, 2, 3, 4], "each example exactly once"
    by_index = {r["example_index"]: r for r in results["items"]}
    assert by_index[2]["output"] == "billing", "the first report of an example wins"
    assert by_index[0]["scores"] == [
        {"evaluator": "exact", "score": 0.0, "passed": False, "detail": None},
        {"evaluator": "label", "score": 0.0, "passed": False, "detail": None},
    ]
    assert (
        by_index[1]["output"],
        by_index[1]["run_id"],
        by_index[1]["cost_usd"],
        by_index[1]["latency_ms"],
    ) == (
        "tech",
        "run_1",
        "0.0001",
        200.0,
    )
    assert by_index[3]["error"] == {"code": "provider_timeout", "message": "timed out after 30 s"}
    assert by_index[3]["output"] is None and by_index[3]["scores"] == []

    pages: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await registry.client.get(f"{path}/results", params=params)).json()
        pages.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert (
        await registry.client.get(f"{path}/results", params={"cursor": "not-a-cursor"})
    ).status_code == 400

    # a second run: its own number and its own pending status; run 1 stays readable
    second = await registry.client.post(f"{path}/start")
    assert second.status_code == 202 and (second.json()["run_number"], second.json()["status"]) == (
        2,
        "pending",
    )
    latest = await status()
    assert (latest["run_number"], latest["status"], latest["examples_scored"], latest["summary"]) == (
        2,
        "pending",
        0,
        None,
    )
    assert (await status(1))["status"] == "completed"
    empty = (await registry.client.get(f"{path}/results")).json()
    assert (empty["run_number"], empty["status"], empty["items"]) == (2, "pending", [])
    kept = (await registry.client.get(f"{path}/results", params={"run": 1})).json()
    assert [r["example_index"] for r in kept["items"]] == [0, 1, 2, 3, 4]
    missing = await registry.client.get(f"{path}/results", params={"run": 3})
    assert missing.status_code == 404


async def test_results_are_isolated_by_tenant(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    a, b = registry.tenant(), registry.tenant()
    body = await seed(registry, a, rows=2)
    experiment = await registry.create(f"/v1/tenants/{a}/experiments", body)
    path = f"/v1/tenants/{a}/experiments/{experiment['id']}"
    await registry.client.post(f"{path}/start")
    mine = Executor(a, experiment["id"], 1)
    # events that claim tenant b for a's experiment must never show up under a
    foreign = Executor(b, experiment["id"], 1)
    await publish(
        registry,
        [
            foreign.started(count=99),
            foreign.scored(1, "spoofed"),
            mine.started(count=2),
            mine.scored(0, "ok"),
        ],
    )

    async def status() -> dict[str, Any]:
        response: dict[str, Any] = (await registry.client.get(f"{path}/status")).json()
        return response

    seen = await eventually(
        status, lambda s: s["status"] == "running" and s["examples_scored"] == 1, interval_s=0.2
    )
    assert seen["examples_total"] == 2
    results = (await registry.client.get(f"{path}/results")).json()
    assert [(r["example_index"], r["output"]) for r in results["items"]] == [(0, "ok")]
    for suffix in ("/status", "/results"):
        other = await registry.client.get(f"/v1/tenants/{b}/experiments/{experiment['id']}{suffix}")
        assert other.status_code == 404
    db = registry.runtime.db
    for name in ("experiment_results", "experiment_run_progress"):
        assert await db[name].count_documents({"experiment_id": experiment["id"], "tenant_id": b}) == 0, name


async def snapshot(registry: Registry) -> dict[str, list[dict[str, Any]]]:
    db = registry.runtime.db
    names = ("experiments", "experiment_runs", "experiment_run_progress", "experiment_results")
    return {name: sorted([d async for d in db[name].find({})], key=lambda d: d["_id"]) for name in names}


async def test_rebuilt_registry_views_equal_the_inline_ones(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    tenant = registry.tenant()
    body = await seed(registry, tenant, rows=3)
    base = f"/v1/tenants/{tenant}/experiments"
    for i in range(2):
        created = await registry.create(base, {**body, "name": f"E{i}", "tags": ["t"]})
        path = f"{base}/{created['id']}"
        await registry.client.put(
            path, json={"concurrency": 2 + i, "parameters": {"model": "m", "n": [1, 2.5]}}
        )
        await registry.client.post(f"{path}/start")
        await registry.client.post(f"{path}/start", params={"force": "true"})
    archived = await registry.client.put(path, json={"status": "archived"})
    assert archived.status_code == 200, archived.text
    await registry.runtime.projector.catch_up(older_than=timedelta(0))
    before = await snapshot(registry)
    assert before["experiments"] and len(before["experiment_runs"]) >= 4
    await registry.runtime.projector.rebuild()
    after = await snapshot(registry)
    assert after["experiments"] == before["experiments"]
    assert after["experiment_runs"] == before["experiment_runs"]
    # the executor's reports come from Kafka, not from this event store: a rebuild keeps them
    assert after["experiment_run_progress"] == before["experiment_run_progress"]
    assert after["experiment_results"] == before["experiment_results"]
