"""Agent runs and experiment execution through the public gateway (issue 4)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest

from tests.e2e.conftest import System
from tests.e2e.helpers import (
    all_items,
    client,
    eventually,
    finished_experiment,
    llm_flow,
    new_tenant_with_admin,
)
from tests.support.kafka import read_topic

pytestmark = pytest.mark.e2e

SAY = {"provider": "local", "model": "local-echo", "prompt": "Say {{ inputs.message }}"}
FLOW = llm_flow(SAY, output={"value": {"answer": "{{ draft.text }}"}})
SLOW_FLOW = llm_flow({**SAY, "metadata": {"local_latency_s": 30}}, output={"value": "{{ draft.text }}"})


def usage_of(system: System, run_id: str) -> list[dict]:
    records = asyncio.run(
        read_topic(
            system.infra.kafka_bootstrap_servers, system.topic("ailab.usage.events"), until=1, timeout_s=5
        )
    )
    bodies = [json.loads(r.value or b"{}") for r in records]
    return [b["payload"] for b in bodies if b["payload"].get("run_id") == run_id]


def test_run_two_node_flow_logs_traces_usage_and_cancel(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin)
    owner = client(system.url, owner_token)
    base = f"/v1/tenants/{tenant_id}"
    agent_id = owner.post(f"{base}/agents", json={"name": "echo"}).json()["id"]
    assert owner.post(f"{base}/agents/{agent_id}/versions", json={"flow_graph": FLOW}).status_code == 201

    def start() -> dict:
        reply = owner.post(f"{base}/runs", json={"agent_id": agent_id, "inputs": {"message": "hello there"}})
        return reply.json() if reply.status_code == 201 else {}

    run = eventually(start, timeout_s=30)  # the executor learns the new version from the registry's events
    run_id = run["id"]
    done = eventually(
        lambda: (r := owner.get(f"{base}/runs/{run_id}").json())["status"] in ("succeeded", "failed") and r,
        timeout_s=30,
    )
    assert done["status"] == "succeeded", done
    assert "hello there" in json.dumps(done["output"])
    logs = owner.get(f"{base}/runs/{run_id}/logs").json()["items"]
    assert logs, "the run wrote logs"
    traces = owner.get(f"{base}/runs/{run_id}/traces").json()
    (root,) = traces["spans"]
    assert root["operation_name"] == "agent.run" and root["parent_span_id"] is None
    assert len(root["trace_id"]) == 32 and len(root["span_id"]) == 16
    nodes = root["children"]
    assert all(child["parent_span_id"] == root["span_id"] for child in nodes)
    assert any(grand["operation_name"] == "llm.call" for child in nodes for grand in child["children"])

    totals = done["totals"]
    usage = eventually(
        lambda: (
            (u := usage_of(system, run_id))
            and {e["meter"] for e in u} >= {"requests", "tokens_in", "tokens_out", "compute_seconds"}
            and u
        ),
        timeout_s=30,
    )
    by_meter: dict[str, Decimal] = {}
    for event in usage:
        by_meter[event["meter"]] = by_meter.get(event["meter"], Decimal(0)) + Decimal(event["quantity"])
    assert by_meter["tokens_in"] == totals["tokens_in"] > 0
    assert by_meter["tokens_out"] == totals["tokens_out"] > 0
    assert by_meter["requests"] == 1

    slow_agent = owner.post(f"{base}/agents", json={"name": "slow"}).json()["id"]
    owner.post(f"{base}/agents/{slow_agent}/versions", json={"flow_graph": SLOW_FLOW})
    slow = eventually(
        lambda: (
            (
                r := owner.post(f"{base}/runs", json={"agent_id": slow_agent, "inputs": {"message": "x"}})
            ).status_code
            == 201
            and r.json()
        ),
        timeout_s=30,
    )
    eventually(lambda: owner.get(f"{base}/runs/{slow['id']}").json()["status"] == "running", timeout_s=15)
    started = time.monotonic()
    cancelled = owner.patch(f"{base}/runs/{slow['id']}", json={"status": "cancelled"})
    assert cancelled.status_code == 200, cancelled.text
    final = eventually(
        lambda: (r := owner.get(f"{base}/runs/{slow['id']}").json())["status"] != "running" and r,
        timeout_s=15,
    )
    assert final["status"] == "cancelled" and time.monotonic() - started < 10
    listed = owner.get(f"{base}/runs", params={"status": "cancelled"}).json()["items"]
    assert [r["id"] for r in listed] == [slow["id"]]


def test_experiment_over_100_examples_reports_results(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="enterprise")
    owner = client(system.url, owner_token)
    base = f"/v1/tenants/{tenant_id}"
    agent_id = owner.post(f"{base}/agents", json={"name": "echo"}).json()["id"]
    owner.post(f"{base}/agents/{agent_id}/versions", json={"flow_graph": FLOW})
    dataset_id = owner.post(f"{base}/datasets", json={"name": "echo set"}).json()["id"]
    rows = b"".join(b'{"message": "m%d", "expected": "Say m%d"}\n' % (i, i) for i in range(100))
    up = owner.post(
        f"{base}/datasets/{dataset_id}/upload", content=rows, headers={"Content-Type": "application/x-ndjson"}
    )
    assert up.status_code == 200 and up.json()["row_count"] == 100
    eventually(
        lambda: (
            owner.post(f"{base}/runs", json={"agent_id": agent_id, "inputs": {"message": "warm"}}).status_code
            == 201
        ),
        timeout_s=30,
    )  # the executor knows the version
    experiment = owner.post(
        f"{base}/experiments",
        json={
            "name": "echo contains",
            "target": {"type": "agent_version", "agent_id": agent_id, "version": 1},
            "dataset_id": dataset_id,
            "concurrency": 8,
            "evaluators": [
                {"name": "mentions", "type": "contains", "config": {"value": "Say m"}},
                {"name": "json", "type": "json_valid"},
            ],
        },
    )
    assert experiment.status_code == 201, experiment.text
    experiment_id = experiment.json()["id"]
    assert owner.post(f"{base}/experiments/{experiment_id}/start").status_code == 202
    status = finished_experiment(owner, tenant_id, experiment_id, timeout_s=180)
    assert status["status"] == "completed", status
    assert status["examples_scored"] == 100, status
    results = all_items(owner, f"{base}/experiments/{experiment_id}/results")
    assert sorted(r["example_index"] for r in results) == list(range(100))
    summary = status["summary"]
    assert summary["examples_total"] == 100 and summary["examples_failed"] == 0
    assert summary["pass_rate"] == 1.0, summary  # every echo contains "Say m<i>"
    assert all(r["error"] is None and r["tokens_in"] > 0 for r in results)


def test_run_on_the_fake_openai_server_reports_its_exact_usage_and_cost(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin)
    owner = client(system.url, owner_token)
    base = f"/v1/tenants/{tenant_id}"
    flow = {
        "nodes": [
            {"id": "in", "type": "input"},
            {
                "id": "draft",
                "type": "llm",
                "config": {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "prompt": "Say {{ inputs.message }}",
                },
            },
            {"id": "out", "type": "output", "config": {"path": "draft.text"}},
        ],
        "edges": [{"source": "in", "target": "draft"}, {"source": "draft", "target": "out"}],
    }
    agent_id = owner.post(f"{base}/agents", json={"name": "openai"}).json()["id"]
    owner.post(f"{base}/agents/{agent_id}/versions", json={"flow_graph": flow})
    run = eventually(
        lambda: (
            (
                r := owner.post(
                    f"{base}/runs",
                    json={"agent_id": agent_id, "inputs": {"message": "hello brave new world"}},
                )
            ).status_code
            == 201
            and r.json()
        ),
        timeout_s=30,
    )
    done = eventually(
        lambda: (
            (r := owner.get(f"{base}/runs/{run['id']}").json())["status"] in ("succeeded", "failed") and r
        ),
        timeout_s=30,
    )
    assert done["status"] == "succeeded", done
    assert done["output"] == "echo: Say hello brave new world"
    # the fake counts words: 5 prompt and 6 completion tokens; gpt-4o-mini lists $0.15 / $0.60 per 1M
    assert (done["totals"]["tokens_in"], done["totals"]["tokens_out"]) == (5, 6)
    expected_cost = Decimal(5) * Decimal("0.15") / 1_000_000 + Decimal(6) * Decimal("0.60") / 1_000_000
    assert Decimal(done["totals"]["cost_usd"]) == expected_cost
    usage = eventually(
        lambda: (
            (u := usage_of(system, run["id"]))
            and {e["meter"] for e in u} >= {"requests", "tokens_in", "tokens_out"}
            and u
        ),
        timeout_s=30,
    )
    tokens = {e["meter"]: Decimal(e["quantity"]) for e in usage if e["meter"] in ("tokens_in", "tokens_out")}
    assert tokens == {"tokens_in": 5, "tokens_out": 6}
    assert all(
        e["provider"] == "openai" and e["model"] == "gpt-4o-mini"
        for e in usage
        if e["meter"] != "compute_seconds"
    )
    assert any(r.path == "/v1/chat/completions" for r in system.openai.requests)
