"""Controlling runs: cancelling a slow run stops its provider stream at once and keeps the tokens
already reported; cancelling a queued run; server-sent-event streams; per-tenant concurrency (free 2
running + 4 queued, then 429 with Retry-After; pro 10)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from .conftest import Executor

pytestmark = pytest.mark.integration

WORDS = "one two three four five six seven eight nine ten"


def slow_flow(chunk_delay_s: float = 1.0) -> dict[str, Any]:
    """The local provider reports the prompt tokens at once, then streams one word per `chunk_delay_s`."""
    return {
        "nodes": [
            {
                "id": "draft",
                "type": "llm",
                "config": {"prompt": WORDS, "metadata": {"local_chunk_delay_s": chunk_delay_s}},
            },
            {"id": "out", "type": "output", "config": {"path": "draft.text"}},
        ],
        "edges": [{"source": "draft", "target": "out"}],
    }


async def cancel(executor: Executor, tenant: str, run_id: str) -> Any:
    return await executor.client.patch(f"/v1/tenants/{tenant}/runs/{run_id}", json={"status": "cancelled"})


async def test_cancelling_a_slow_run_is_quick_and_keeps_spent_tokens(executor: Executor) -> None:
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, slow_flow())
    run = await executor.start(tenant, agent_id)
    await executor.wait(tenant, run["id"], ("running",))
    await asyncio.sleep(0.5)  # the stream has begun: the prompt tokens are reported
    url = f"/v1/tenants/{tenant}/runs/{run['id']}"
    assert (await executor.client.delete(url)).json()["error"]["code"] == "run_not_finished"

    started = time.monotonic()
    response = await executor.client.patch(url, json={"status": "cancelled", "reason": "too slow"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and elapsed < 1.0, elapsed
    assert cancelled["cancelled_by"] == "usr_test" and cancelled["cancel_reason"] == "too slow"
    assert cancelled["error"] is None and response.headers["ETag"] == f'"{cancelled["version"]}"'
    assert cancelled["totals"]["tokens_in"] == 10 and cancelled["totals"]["tokens_out"] == 0
    assert cancelled["totals"]["provider_calls"] == 1

    again = await cancel(executor, tenant, run["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_already_finished"

    events = await executor.usage_events(run["id"], 4)
    by_meter = {e["payload"]["meter"]: e["payload"] for e in events}
    assert by_meter["tokens_in"]["quantity"] == "10" and by_meter["tokens_out"]["quantity"] == "0"
    assert by_meter["requests"]["dimensions"]["status"] == "cancelled"
    assert by_meter["requests"]["dimensions"]["error_type"] == "provider_cancelled"
    trace = (await executor.client.get(f"{url}/traces")).json()
    [root] = trace["spans"]
    assert root["status"] == "error" and root["error"]["type"] == "cancelled"
    assert root["children"][0]["children"][0]["attributes"]["tokens_in"] == 10


async def test_cancelling_a_queued_run_never_starts_it(executor: Executor) -> None:
    tenant = executor.tenant()  # unknown to tenancy: the free plan, 2 at a time
    agent_id = await executor.agent(tenant, slow_flow())
    runs = [await executor.start(tenant, agent_id) for _ in range(3)]
    for run in runs[:2]:
        await executor.wait(tenant, run["id"], ("running",))
    queued = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{runs[2]['id']}")).json()
    assert queued["status"] == "queued"
    response = await cancel(executor, tenant, runs[2]["id"])
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["started_at"] is None and response.json()["totals"]["provider_calls"] == 0
    for run in runs[:2]:
        assert (await cancel(executor, tenant, run["id"])).json()["status"] == "cancelled"


def parse_sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_stream_true_answers_server_sent_events_ending_with_the_final_status(
    executor: Executor,
) -> None:
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, slow_flow(chunk_delay_s=0.01))
    response = await executor.client.post(
        f"/v1/tenants/{tenant}/runs", json={"agent_id": agent_id, "stream": True}, timeout=30
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "run.queued" and names[1] == "run.started" and names[-1] == "run.finished"
    assert names.count("node.started") == names.count("node.finished") == 2
    deltas = "".join(data["text"] for name, data in events if name == "text.delta")
    assert deltas == "echo: " + WORDS
    final = events[-1][1]
    assert final["status"] == "succeeded" and final["output"] == "echo: " + WORDS
    assert final["id"] == events[0][1]["id"] == response.headers["Location"].rsplit("/", 1)[1]
    stored = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{final['id']}")).json()
    assert stored["status"] == "succeeded" and stored["streamed"] is True

    # Accept: text/event-stream asks for the same
    by_accept = await executor.client.post(
        f"/v1/tenants/{tenant}/runs",
        json={"agent_id": agent_id},
        headers={"Accept": "text/event-stream"},
        timeout=30,
    )
    assert parse_sse(by_accept.text)[-1][1]["status"] == "succeeded"


async def test_stream_of_a_failing_run_ends_with_its_failure(executor: Executor) -> None:
    tenant = executor.tenant()
    flow = {"nodes": [{"id": "bad", "type": "transform", "config": {"path": "nope.deeper"}}]}
    agent_id = await executor.agent(tenant, flow)
    response = await executor.client.post(
        f"/v1/tenants/{tenant}/runs", json={"agent_id": agent_id, "stream": True}
    )
    events = parse_sse(response.text)
    assert events[-1][0] == "run.finished"
    assert events[-1][1]["status"] == "failed" and events[-1][1]["error"]["code"] == "template_error"
    assert ("node.finished", "error") in [(n, d.get("status")) for n, d in events]


async def test_free_tenant_runs_two_queues_four_then_gets_429(executor: Executor) -> None:
    tenant = executor.tenant()
    await executor.plan(tenant, "free")
    agent_id = await executor.agent(tenant, slow_flow(chunk_delay_s=5))
    runs = [await executor.start(tenant, agent_id) for _ in range(6)]
    for run in runs[:2]:
        await executor.wait(tenant, run["id"], ("running",))
    statuses = [
        (await executor.client.get(f"/v1/tenants/{tenant}/runs/{r['id']}")).json()["status"] for r in runs
    ]
    assert statuses == ["running", "running", "queued", "queued", "queued", "queued"]

    refused = await executor.client.post(f"/v1/tenants/{tenant}/runs", json={"agent_id": agent_id})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_runs"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["details"] == {"running": 2, "queued": 4, "limit": 2, "queue_size": 4}
    listed = (await executor.client.get(f"/v1/tenants/{tenant}/runs")).json()["items"]
    assert len(listed) == 6  # the refused run left nothing behind

    # another tenant is not affected
    other = executor.tenant()
    other_agent = await executor.agent(other, slow_flow(chunk_delay_s=0.001))
    assert (await executor.wait(other, (await executor.start(other, other_agent))["id"]))[
        "status"
    ] == "succeeded"

    # cancelling a running run lets the first queued one start, in order
    await cancel(executor, tenant, runs[0]["id"])
    await executor.wait(tenant, runs[2]["id"], ("running",))
    assert (await executor.client.get(f"/v1/tenants/{tenant}/runs/{runs[3]['id']}")).json()[
        "status"
    ] == "queued"
    for run in runs[1:]:
        assert (await cancel(executor, tenant, run["id"])).status_code == 200


async def test_pro_tenant_runs_ten_at_once(executor: Executor) -> None:
    tenant = executor.tenant()
    await executor.plan(tenant, "pro")
    agent_id = await executor.agent(tenant, slow_flow(chunk_delay_s=5))
    runs = [await executor.start(tenant, agent_id) for _ in range(11)]
    for run in runs[:10]:
        await executor.wait(tenant, run["id"], ("running",))
    assert (await executor.client.get(f"/v1/tenants/{tenant}/runs/{runs[10]['id']}")).json()[
        "status"
    ] == "queued"
    await asyncio.gather(*(cancel(executor, tenant, r["id"]) for r in runs))
    for run in runs:
        assert (await executor.wait(tenant, run["id"]))["status"] == "cancelled"
