"""Runs whose llm node calls `openai`, against the fake OpenAI server (real HTTP, chat-completions
wire format, base URL from settings): the usage the server reports is metered exactly and priced
from the price table; the tenant's own credential is used; unknown models cost `null`, never 0;
a failed call is still metered."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

from .conftest import Executor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import provider_openai as fo  # noqa: E402

pytestmark = pytest.mark.integration


def flow(model: str = "gpt-4o-mini") -> dict[str, object]:
    return {
        "nodes": [
            {
                "id": "draft",
                "type": "llm",
                "config": {"provider": "openai", "model": model, "prompt": "Say {{ message }}"},
            },
            {"id": "out", "type": "output", "config": {"path": "draft.text"}},
        ],
        "edges": [{"source": "draft", "target": "out"}],
    }


@pytest.fixture
def tenant_key(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    tenant = executor.tenant()
    key = "sk-tenant-" + tenant
    monkeypatch.setenv(f"AILAB_SECRET_{tenant.upper()}_OPENAI", key)
    monkeypatch.setenv("AILAB_SECRET_OPENAI", "sk-shared-default")
    executor.openai.reset()
    return tenant, key


async def test_openai_usage_and_cost_are_exactly_the_servers(
    executor: Executor, tenant_key: tuple[str, str]
) -> None:
    tenant, key = tenant_key
    agent_id = await executor.agent(tenant, flow())
    run = await executor.wait(
        tenant, (await executor.start(tenant, agent_id, inputs={"message": "hello brave new world"}))["id"]
    )
    assert run["status"] == "succeeded", run
    assert run["output"] == "echo: Say hello brave new world"

    [request] = executor.openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {key}"  # the tenant's own secret, not the shared one
    body = request.json()
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "Say hello brave new world"}]

    # the fake counts words: 5 prompt tokens, 6 completion tokens; gpt-4o-mini: $0.15 / $0.60 per 1M
    expected_in = Decimal(5) * Decimal("0.15") / 1_000_000
    expected_out = Decimal(6) * Decimal("0.60") / 1_000_000
    assert (run["totals"]["tokens_in"], run["totals"]["tokens_out"]) == (5, 6)
    assert Decimal(run["totals"]["cost_usd"]) == expected_in + expected_out
    assert run["totals"]["unpriced_calls"] == 0

    events = await executor.usage_events(run["id"], 4)
    by_meter = {e["payload"]["meter"]: e["payload"] for e in events}
    assert by_meter["tokens_in"]["quantity"] == "5" and by_meter["tokens_out"]["quantity"] == "6"
    assert Decimal(by_meter["tokens_in"]["cost_usd_estimate"]) == expected_in
    assert Decimal(by_meter["tokens_out"]["cost_usd_estimate"]) == expected_out
    assert by_meter["requests"]["cost_usd_estimate"] is None
    for meter in ("requests", "tokens_in", "tokens_out"):
        payload = by_meter[meter]
        assert payload["provider"] == "openai" and payload["model"] == "gpt-4o-mini"
        dims = payload["dimensions"]
        assert (
            dims["status_code"] == 200 and dims["raw_model"] == fo.MODEL and dims["cost_status"] == "priced"
        )
        assert dims["latency_ms"] >= 0 and dims["price_version"]

    trace = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/traces")).json()
    call = trace["spans"][0]["children"][0]["children"][0]
    assert call["attributes"]["provider"] == "openai" and call["attributes"]["model"] == "gpt-4o-mini"
    assert Decimal(call["attributes"]["cost_usd"]) == expected_in + expected_out


async def test_unknown_model_costs_null_with_a_warning_never_zero(
    executor: Executor, tenant_key: tuple[str, str]
) -> None:
    tenant, _ = tenant_key
    executor.openai.script(
        lambda rec: fo.stream_reply(
            fo.stream_chunks(["made", " up"], usage_block=fo.usage(3, 2), model="mystery-model")
        )
    )
    agent_id = await executor.agent(tenant, flow("mystery-model"))
    run = await executor.wait(
        tenant, (await executor.start(tenant, agent_id, inputs={"message": "x y"}))["id"]
    )
    assert run["status"] == "succeeded" and run["output"] == "made up"
    assert run["totals"]["unpriced_calls"] == 1 and run["totals"]["cost_usd"] == "0"
    assert (run["totals"]["tokens_in"], run["totals"]["tokens_out"]) == (3, 2)
    events = await executor.usage_events(run["id"], 4)
    tokens = [e["payload"] for e in events if e["payload"]["meter"] in ("tokens_in", "tokens_out")]
    assert [t["cost_usd_estimate"] for t in tokens] == [None, None]
    assert {t["dimensions"]["cost_status"] for t in tokens} == {"unpriced"}
    logs = (
        await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/logs", params={"level": "warning"})
    ).json()
    assert any("no price for openai/mystery-model" in line["message"] for line in logs["items"])


async def test_a_failed_provider_call_fails_the_run_and_is_still_metered(
    executor: Executor, tenant_key: tuple[str, str]
) -> None:
    tenant, key = tenant_key
    executor.openai.script(fo.error(400, f"bad request for key {key}", "invalid_request_error"))
    agent_id = await executor.agent(tenant, flow())
    run = await executor.wait(tenant, (await executor.start(tenant, agent_id, inputs={"message": "x"}))["id"])
    assert run["status"] == "failed"
    assert run["error"]["code"] == "provider_bad_request" and run["error"]["node_id"] == "draft"
    assert key not in run["error"]["message"]  # the echoed credential is scrubbed
    events = await executor.usage_events(run["id"], 2)
    [request] = [e["payload"] for e in events if e["payload"]["meter"] == "requests"]
    assert request["quantity"] == "1"
    assert request["dimensions"]["status_code"] == 400
    assert request["dimensions"]["error_type"] == "provider_bad_request"
    assert not [e for e in events if e["payload"]["meter"] in ("tokens_in", "tokens_out")]  # none reported
    trace = (await executor.client.get(f"/v1/tenants/{tenant}/runs/{run['id']}/traces")).json()
    [root] = trace["spans"]
    assert root["status"] == "error" and root["error"]["type"] == "provider_bad_request"
    node = root["children"][0]
    assert node["status"] == "error" and node["error"]["type"] == "provider_bad_request"
    assert node["children"][0]["attributes"]["status_code"] == 400


async def test_missing_credential_is_a_clear_failure(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AILAB_SECRET_OPENAI", raising=False)
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, flow())
    run = await executor.wait(tenant, (await executor.start(tenant, agent_id, inputs={"message": "m"}))["id"])
    assert run["status"] == "failed" and run["error"]["code"] == "provider_auth_failed"
    assert "secret_ref 'openai'" in run["error"]["message"]


async def test_a_template_naming_a_missing_input_fails_clearly(executor: Executor) -> None:
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, flow())
    run = await executor.wait(tenant, (await executor.start(tenant, agent_id))["id"])
    assert run["status"] == "failed" and run["error"]["code"] == "template_error"
    assert run["error"]["node_id"] == "draft" and "message" in run["error"]["message"]
