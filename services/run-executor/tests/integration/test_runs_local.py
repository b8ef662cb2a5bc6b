"""A flow on the built-in `local` provider, end to end: the run succeeds, its logs and span tree are
readable, and its usage reaches `ailab.usage.events` with exact token counts; lists, filters,
idempotency, deletion and tenant isolation."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.support.kafka import read_topic

from .conftest import Executor

pytestmark = pytest.mark.integration

FLOW = {
    "nodes": [
        {
            "id": "draft",
            "type": "llm",
            "config": {"provider": "local", "model": "local-echo", "prompt": "Say {{ inputs.message }}"},
        },
        {"id": "out", "type": "output", "config": {"value": {"answer": "{{ draft.text }}"}}},
    ],
    "edges": [{"source": "draft", "target": "out"}],
}


def walk(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for span in spans:
        out.append(span)
        out.extend(walk(span["children"]))
    return out


async def test_two_node_local_flow_succeeds_with_logs_spans_and_exact_usage(executor: Executor) -> None:
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, FLOW, project_id="prj_local")
    created = await executor.start(tenant, agent_id, inputs={"message": "hello brave new world"})
    assert created["status"] == "queued" and created["agent_version"] == 1 and created["version"] == 1
    run = await executor.wait(tenant, created["id"])
    assert run["status"] == "succeeded", run
    assert run["output"] == {"answer": "echo: Say hello brave new world"}
    # the local provider counts whitespace words: "Say hello brave new world" in, "echo: ..." out
    totals = run["totals"]
    assert (totals["tokens_in"], totals["tokens_out"]) == (5, 6)
    assert totals["provider_calls"] == 1 and totals["steps"] == 2 and totals["cost_usd"] == "0"
    assert run["started_at"] and run["finished_at"] and run["version"] == 3

    logs = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/logs")).json()
    messages = [line["message"] for line in logs["items"]]
    assert messages[0] == "run started" and messages[-1] == "run succeeded"
    assert "node draft (llm) started" in messages
    assert [line["seq"] for line in logs["items"]] == list(range(1, len(messages) + 1))
    page = (
        await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/logs", params={"limit": 2})
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (
        await executor.client.get(
            f"/v1/tenants/{tenant}/runs/{run['id']}/logs",
            params={"cursor": page["next_cursor"], "limit": 200},
        )
    ).json()
    assert [i["seq"] for i in page["items"] + rest["items"]] == list(range(1, len(messages) + 1))

    trace = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/traces")).json()
    assert re.fullmatch(r"[0-9a-f]{32}", trace["trace_id"]) and trace["trace_id"] == run["trace_id"]
    [root] = trace["spans"]
    assert root["operation_name"] == "agent.run" and root["parent_span_id"] is None and root["status"] == "ok"
    assert [c["operation_name"] for c in root["children"]] == ["node.llm", "node.output"]
    llm_node = root["children"][0]
    [call] = llm_node["children"]
    assert call["operation_name"] == "llm.call" and call["parent_span_id"] == llm_node["span_id"]
    assert call["attributes"]["provider"] == "local" and call["attributes"]["model"] == "local-echo"
    assert (call["attributes"]["tokens_in"], call["attributes"]["tokens_out"]) == (5, 6)
    spans = walk(trace["spans"])
    assert trace["span_count"] == len(spans) == 4
    for span in spans:
        assert re.fullmatch(r"[0-9a-f]{16}", span["span_id"]) and span["trace_id"] == run["trace_id"]
        attrs = span["attributes"]
        assert (attrs["tenant_id"], attrs["run_id"], attrs["agent_id"], attrs["user_id"]) == (
            tenant,
            run["id"],
            agent_id,
            "usr_test",
        )
        start, end = (
            datetime.fromisoformat(span[k].replace("Z", "+00:00")) for k in ("start_time", "end_time")
        )
        assert end >= start and span["duration_ms"] >= 0

    events = await executor.usage_events(run["id"], 4)
    by_meter = {e["payload"]["meter"]: e for e in events}
    assert sorted(by_meter) == ["compute_seconds", "requests", "tokens_in", "tokens_out"]
    assert len(events) == 4
    assert by_meter["requests"]["payload"]["quantity"] == "1"
    assert by_meter["tokens_in"]["payload"]["quantity"] == "5"
    assert by_meter["tokens_out"]["payload"]["quantity"] == "6"
    assert Decimal(by_meter["compute_seconds"]["payload"]["quantity"]) > 0
    for event in events:
        payload = event["payload"]
        assert event["tenant_id"] == tenant and payload["tenant_id"] == tenant
        assert (payload["agent_id"], payload["project_id"], payload["user_id"]) == (
            agent_id,
            "prj_local",
            "usr_test",
        )
    tokens = by_meter["tokens_in"]["payload"]
    assert tokens["provider"] == "local" and tokens["model"] == "local-echo"
    assert tokens["cost_usd_estimate"] == "0"  # the local provider is priced at 0, not unknown
    dims = tokens["dimensions"]
    assert dims["status_code"] == 200 and dims["error_type"] is None and dims["provider"] == "local"
    assert dims["latency_ms"] >= 0 and dims["model"] == "local-echo"

    # the run's lifecycle events are on ailab.runs.events
    records = await read_topic(
        executor.settings.kafka_bootstrap_servers, executor.settings.topic("ailab.runs.events"), until=3
    )
    mine = [json.loads(r.value) for r in records if json.loads(r.value)["payload"].get("run_id") == run["id"]]
    assert [e["event_type"] for e in mine] == ["runs.RunQueued", "runs.RunStarted", "runs.RunSucceeded"]
    assert {e["stream_id"] for e in mine} == {f"run:{tenant}:{run['id']}"}
    assert mine[-1]["payload"]["totals"]["tokens_in"] == 5


async def test_list_filters_pagination_and_idempotency(executor: Executor) -> None:
    tenant = executor.tenant()
    first = await executor.agent(tenant, FLOW)
    second = await executor.agent(tenant, FLOW)
    key = {"Idempotency-Key": "start-once"}
    body = {"agent_id": first, "inputs": {"message": "a"}}
    one = await executor.client.post(f"/v1/tenants/{tenant}/runs", json=body, headers=key)
    again = await executor.client.post(f"/v1/tenants/{tenant}/runs", json=body, headers=key)
    assert one.status_code == again.status_code == 201
    assert one.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert one.headers["Location"].endswith(f"/runs/{one.json()['id']}") and one.headers["ETag"] == '"1"'
    other = await executor.client.post(
        f"/v1/tenants/{tenant}/runs", json={**body, "inputs": {"message": "b"}}, headers=key
    )
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    runs = [one.json()["id"]]
    for agent in (second, second):
        runs.append((await executor.start(tenant, agent, inputs={"message": "x"}))["id"])
    for run_id in runs:
        await executor.wait(tenant, run_id)

    listing = (await executor.client.get(f"/v1/tenants/{tenant}/runs")).json()
    assert [r["id"] for r in listing["items"]] == list(reversed(runs))  # newest first
    by_agent = (await executor.client.get(f"/v1/tenants/{tenant}/runs", params={"agent_id": second})).json()
    assert [r["id"] for r in by_agent["items"]] == list(reversed(runs[1:]))
    page1 = (await executor.client.get(f"/v1/tenants/{tenant}/runs", params={"limit": 2})).json()
    page2 = (
        await executor.client.get(
            f"/v1/tenants/{tenant}/runs", params={"limit": 2, "cursor": page1["next_cursor"]}
        )
    ).json()
    assert [r["id"] for r in page1["items"] + page2["items"]] == list(reversed(runs))
    assert page2["next_cursor"] is None
    ok = (await executor.client.get(f"/v1/tenants/{tenant}/runs", params={"status": "succeeded"})).json()
    assert len(ok["items"]) == 3
    none = (await executor.client.get(f"/v1/tenants/{tenant}/runs", params={"status": "failed"})).json()
    assert none["items"] == []
    created = listing["items"][1]["created_at"]
    after = (
        await executor.client.get(f"/v1/tenants/{tenant}/runs", params={"created_after": created})
    ).json()
    assert [r["id"] for r in after["items"]] == [runs[2]]
    before = (
        await executor.client.get(f"/v1/tenants/{tenant}/runs", params={"created_before": created})
    ).json()
    assert [r["id"] for r in before["items"]] == [runs[0]]
    bad = await executor.client.get(f"/v1/tenants/{tenant}/runs", params={"status": "nope"})
    assert bad.status_code == 422


async def test_bad_input_is_422_never_500(executor: Executor) -> None:
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, FLOW)
    url = f"/v1/tenants/{tenant}/runs"
    unknown = await executor.client.post(url, json={"agent_id": "agt_nope"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_reference"
    assert unknown.json()["error"]["details"][0]["loc"] == ["body", "agent_id"]
    version = await executor.client.post(url, json={"agent_id": agent_id, "version": 9})
    assert version.status_code == 422 and version.json()["error"]["details"][0]["loc"] == ["body", "version"]
    dotted = await executor.client.post(url, json={"agent_id": agent_id, "inputs": {"a.b": 1}})
    assert dotted.status_code == 422 and dotted.json()["error"]["code"] == "invalid_value"
    extra = await executor.client.post(url, json={"agent_id": agent_id, "surprise": 1})
    assert extra.status_code == 422 and extra.json()["error"]["code"] == "validation_error"
    patch = await executor.client.patch(f"{url}/run_nope", json={"status": "running"})
    assert patch.status_code == 422
    no_token = await executor.client.get(url, headers={"X-Internal-Token": "wrong"})
    assert no_token.status_code == 401


async def test_tenant_isolation_and_delete(executor: Executor) -> None:
    tenant, stranger = executor.tenant(), executor.tenant()
    agent_id = await executor.agent(tenant, FLOW)
    # another tenant cannot even start a run of this agent
    refused = await executor.client.post(f"/v1/tenants/{stranger}/runs", json={"agent_id": agent_id})
    assert refused.status_code == 422
    run = await executor.wait(tenant, (await executor.start(tenant, agent_id, inputs={"message": "m"}))["id"])
    base = f"/v1/tenants/{stranger}/runs/{run['id']}"
    for method, path in (("GET", ""), ("GET", "/logs"), ("GET", "/traces"), ("DELETE", "")):
        response = await executor.client.request(method, base + path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    patched = await executor.client.patch(base, json={"status": "cancelled"})
    assert patched.status_code == 404
    assert (await executor.client.get(f"/v1/tenants/{stranger}/runs")).json()["items"] == []

    mine = f"/v1/tenants/{tenant}/runs/{run['id']}"
    stale = await executor.client.delete(mine, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "precondition_failed"
    assert (
        await executor.client.delete(mine, headers={"If-Match": f'"{run["version"]}"'})
    ).status_code == 204
    for path in ("", "/logs", "/traces"):
        assert (await executor.client.get(mine + path)).status_code == 404
    assert (await executor.client.delete(mine)).status_code == 404
    assert await executor.runtime.db["run_logs"].count_documents({"run_id": run["id"]}) == 0
    assert await executor.runtime.db["run_spans"].count_documents({"run_id": run["id"]}) == 0


async def test_rebuilding_the_runs_view_gives_identical_documents(executor: Executor) -> None:
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, FLOW)
    done = await executor.wait(
        tenant, (await executor.start(tenant, agent_id, inputs={"message": "x"}))["id"]
    )
    assert done["status"] == "succeeded"
    runs = executor.runtime.db["runs"]
    before = sorted([d async for d in runs.find({})], key=lambda d: d["_id"])
    assert any(d["status"] == "succeeded" for d in before) and any(d["deleted"] for d in before)
    await executor.runtime.projector.rebuild()
    after = sorted([d async for d in runs.find({})], key=lambda d: d["_id"])
    assert after == before
