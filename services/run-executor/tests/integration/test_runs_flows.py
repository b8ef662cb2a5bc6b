"""Flows through the API: a cycle without an exit stops at the step limit; the wall-clock limit;
http tools (allowlist enforced before any connection, secret headers from the resolver, never
logged); built-in tools; prompts referenced by id and label; model tool calling."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ailab_contracts.events.prompts import PromptCreated, PromptLabelMoved, PromptVersionCreated
from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from run_executor.adapters.registry_views import PROMPT_LABELS, PROMPT_VERSIONS, version_key

from .conftest import Executor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.provider_http import FakeServer, Reply  # noqa: E402

pytestmark = pytest.mark.integration


async def run_flow(executor: Executor, tenant: str, flow: dict[str, Any], **body: Any) -> dict[str, Any]:
    agent_id = await executor.agent(tenant, flow, config=body.pop("config", None))
    return await executor.wait(tenant, (await executor.start(tenant, agent_id, **body))["id"])


async def test_a_cycle_without_exit_fails_with_step_limit_exceeded(executor: Executor) -> None:
    tenant = executor.tenant()
    flow = {
        "nodes": [
            {"id": "in", "type": "input"},
            {"id": "a", "type": "transform", "config": {"template": "a"}},
            {"id": "b", "type": "transform", "config": {"template": "b"}},
        ],
        "edges": [
            {"source": "in", "target": "a"},
            {"source": "a", "target": "b"},
            {"source": "b", "target": "a"},
        ],
    }
    run = await run_flow(executor, tenant, flow)
    assert run["status"] == "failed" and run["error"]["code"] == "step_limit_exceeded"
    assert run["totals"]["steps"] == 100 and run["max_steps"] == 100
    short = await run_flow(executor, tenant, flow, config={"max_steps": 7})
    assert short["error"]["code"] == "step_limit_exceeded" and short["totals"]["steps"] == 7
    trace = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{short['id']}/traces")).json()
    assert trace["span_count"] == 8  # the root and seven node spans


async def test_a_loop_with_an_exit_succeeds(executor: Executor) -> None:
    tenant = executor.tenant()
    flow = {
        "nodes": [
            {"id": "draft", "type": "llm", "config": {"prompt": "{{ topic }}"}},
            {
                "id": "check",
                "type": "condition",
                "config": {"path": "last.text", "op": "contains", "value": "echo: echo:"},
            },
            {"id": "again", "type": "llm", "config": {"prompt": "{{ draft.text }}"}},
            {
                "id": "out",
                "type": "output",
                "config": {"value": {"final": "{{ again.text }}", "first": "{{ draft.text }}"}},
            },
        ],
        "edges": [
            {"source": "draft", "target": "check"},
            {"source": "check", "target": "out", "condition": "true"},
            {"source": "check", "target": "again", "condition": "false"},
            {"source": "again", "target": "check"},
        ],
    }
    run = await run_flow(executor, tenant, flow, inputs={"topic": "cats"})
    assert run["status"] == "succeeded", run
    assert run["output"] == {"final": "echo: echo: cats", "first": "echo: cats"}
    assert run["totals"]["provider_calls"] == 2 and run["totals"]["steps"] == 5
    trace = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/traces")).json()
    nodes = trace["spans"][0]["children"]
    assert [(n["attributes"]["node_id"], n["attributes"].get("branch")) for n in nodes] == [
        ("draft", None),
        ("check", False),
        ("again", None),
        ("check", True),
        ("out", None),
    ]


async def test_the_wall_clock_limit_times_a_run_out(executor: Executor) -> None:
    tenant = executor.tenant()
    flow = {
        "nodes": [
            {
                "id": "slow",
                "type": "llm",
                "config": {"prompt": "a b c", "metadata": {"local_chunk_delay_s": 5}},
            }
        ]
    }
    run = await run_flow(executor, tenant, flow, timeout_s=0.5)
    assert run["status"] == "timed_out" and run["error"]["code"] == "run_timeout"
    assert run["totals"]["tokens_in"] == 3  # reported before the deadline, kept
    assert run["totals"]["latency_ms"] < 3000
    trace = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/traces")).json()
    assert trace["spans"][0]["status"] == "timeout"
    assert trace["spans"][0]["children"][0]["status"] == "timeout"


@pytest.fixture
def tool_server() -> Any:
    with FakeServer(Reply.json({"temperature": 21.5, "city": "Paris"})) as server:
        yield server


async def test_http_tool_outside_its_allowlist_fails_before_connecting(
    executor: Executor, tool_server: FakeServer
) -> None:
    tenant = executor.tenant()
    await executor.tool(
        tenant,
        name="weather",
        kind="http",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
        method="GET",
        url_template=tool_server.base_url + "/weather?city={city}",
        allowed_hosts=["api.example.com"],
    )
    flow = {
        "nodes": [
            {"id": "call", "type": "tool", "config": {"tool": "weather", "arguments": {"city": "{{ city }}"}}}
        ]
    }
    run = await run_flow(executor, tenant, flow, inputs={"city": "Paris"})
    assert run["status"] == "failed" and run["error"]["code"] == "tool_host_not_allowed"
    assert "127.0.0.1" in run["error"]["message"] and run["error"]["node_id"] == "call"
    assert tool_server.requests == []  # no connection was made


async def test_http_tool_with_a_secret_header(
    executor: Executor, tool_server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = executor.tenant()
    secret = "wk-" + tenant + "-very-secret"
    monkeypatch.setenv(f"AILAB_SECRET_{tenant.upper()}_WEATHER_KEY", secret)
    await executor.tool(
        tenant,
        name="weather",
        kind="http",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
        method="GET",
        url_template=tool_server.base_url + "/weather?city={city}",
        headers={"Accept": "application/json", "X-Api-Key": {"secret_ref": "weather-key"}},
        allowed_hosts=["127.0.0.1"],
        timeout_ms=5000,
    )
    flow = {
        "nodes": [
            {
                "id": "call",
                "type": "tool",
                "config": {"tool": "weather", "arguments": {"city": "{{ city }}"}},
            },
            {
                "id": "out",
                "type": "output",
                "config": {"template": "{{ call.body.temperature }} in {{ call.body.city }}"},
            },
        ],
        "edges": [{"source": "call", "target": "out"}],
    }
    run = await run_flow(executor, tenant, flow, inputs={"city": "Saint Denis"})
    assert run["status"] == "succeeded", run
    assert run["output"] == "21.5 in Paris" and run["totals"]["tool_calls"] == 1
    [request] = tool_server.requests
    assert request.path == "/weather?city=Saint%20Denis" and request.headers["x-api-key"] == secret
    logs = (
        await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/logs", params={"limit": 200})
    ).json()
    trace = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/traces")).json()
    stored = json.dumps(logs) + json.dumps(trace) + json.dumps(run)
    assert secret not in stored


async def test_builtin_tools_and_model_tool_calling(executor: Executor) -> None:
    tenant = executor.tenant()
    flow = {
        "nodes": [
            {
                "id": "sum",
                "type": "tool",
                "config": {"tool": "calculator", "arguments": {"expression": "{{ expr }}"}},
            },
            {
                "id": "ask",
                "type": "llm",
                "config": {
                    "prompt": 'please use calculator {"expression": "6 * 7"}',
                    "tools": ["calculator"],
                },
            },
            {
                "id": "out",
                "type": "output",
                "config": {"value": {"sum": "{{ sum.result }}", "answer": "{{ ask.text }}"}},
            },
        ],
        "edges": [{"source": "sum", "target": "ask"}, {"source": "ask", "target": "out"}],
    }
    run = await run_flow(executor, tenant, flow, inputs={"expr": "(2 + 3) * 4.5"})
    assert run["status"] == "succeeded", run
    assert run["output"]["sum"] == 22.5
    assert (
        run["output"]["answer"].startswith("tool calculator returned: ")
        and '"result":42' in run["output"]["answer"]
    )
    assert run["totals"]["tool_calls"] == 2 and run["totals"]["provider_calls"] == 2
    unsafe = await run_flow(executor, tenant, flow, inputs={"expr": "__import__('os').system('id')"})
    assert unsafe["status"] == "failed" and unsafe["error"]["code"] == "calculator_error"


async def test_prompt_referenced_by_id_and_label(executor: Executor) -> None:
    tenant = executor.tenant()
    prompt_id = "pmt_runs_test"
    await executor.publish(
        REGISTRY_TOPIC,
        tenant,
        f"prompt:{tenant}:{prompt_id}",
        PromptCreated(prompt_id=prompt_id, name="Greeting", created_by="usr_test"),
        PromptVersionCreated(
            prompt_id=prompt_id,
            version=1,
            template="Hello {{ name }} from v1",
            variables=[{"name": "name", "type": "string"}],  # type: ignore[list-item]
            created_by="usr_test",
        ),
        PromptVersionCreated(
            prompt_id=prompt_id,
            version=2,
            template="Hi {{ name }} in {{ tone }} tone",
            variables=[{"name": "name"}, {"name": "tone", "required": False, "default": "calm"}],  # type: ignore[list-item]
            created_by="usr_test",
        ),
        PromptLabelMoved(prompt_id=prompt_id, label="production", version=1, moved_by="usr_test"),
    )
    await executor._wait_doc(PROMPT_VERSIONS, version_key(prompt_id, 2))
    await executor._wait_doc(PROMPT_LABELS, f"{prompt_id}:production")

    def flow(version: Any) -> dict[str, Any]:
        config = {"prompt_id": prompt_id, "variables": {"name": "{{ user.first }}"}}
        if version is not None:
            config["prompt_version"] = version
        return {"nodes": [{"id": "greet", "type": "llm", "config": config}]}

    inputs = {"user": {"first": "Ada"}}
    latest = await run_flow(executor, tenant, flow(None), inputs=inputs)
    assert latest["output"]["text"] == "echo: Hi Ada in calm tone"
    labelled = await run_flow(executor, tenant, flow("production"), inputs=inputs)
    assert labelled["output"]["text"] == "echo: Hello Ada from v1"
    missing = await run_flow(executor, tenant, flow("staging"), inputs=inputs)
    assert missing["status"] == "failed" and missing["error"]["code"] == "prompt_not_found"
