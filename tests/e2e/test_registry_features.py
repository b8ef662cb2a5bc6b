"""Prompts, tools and experiments through the public gateway (issue 3); datasets have their own file."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import System
from tests.e2e.helpers import (
    FLOW,
    client,
    eventually,
    finished_experiment,
    invite_and_join,
    new_tenant_with_admin,
)

pytestmark = pytest.mark.e2e


def support_prompt_version(system: str, temperature: float, changelog: str) -> dict[str, Any]:
    """A version of the support-answer prompt: its system message, temperature and changelog vary."""
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": "Ticket: {{ ticket }}"},
        ],
        "variables": [
            {"name": "tone", "type": "string", "required": False, "default": "kind"},
            {"name": "ticket", "type": "string"},
        ],
        "model_params": {"model": "gpt-4o-mini", "temperature": temperature},
        "changelog": changelog,
    }


def test_prompt_version_render_labels_and_diff(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin)
    dev = client(
        system.url, invite_and_join(system.url, client(system.url, owner_token), tenant_id, "developer")
    )
    base = f"/v1/tenants/{tenant_id}/prompts"
    prompt = dev.post(
        base, json={"name": "Support answer", "tags": ["support"]}, headers={"Idempotency-Key": "p1"}
    )
    assert prompt.status_code == 201, prompt.text
    prompt_id = prompt.json()["id"]
    v1 = dev.post(
        f"{base}/{prompt_id}/versions",
        json=support_prompt_version("Be {{ tone }}.", temperature=0.2, changelog="first"),
    )
    assert v1.status_code == 201, v1.text
    v2 = dev.post(
        f"{base}/{prompt_id}/versions",
        json=support_prompt_version("Be {{ tone }} and brief.", temperature=0.0, changelog="brief"),
    )
    assert v2.json()["version"] == 2

    rendered = dev.post(f"{base}/{prompt_id}/versions/1/render", json={"variables": {"ticket": "refund"}})
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["rendered"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Ticket: refund"},
    ]
    missing = dev.post(f"{base}/{prompt_id}/versions/1/render", json={"variables": {"nope": 1}})
    assert missing.status_code == 422
    error = missing.json()["error"]
    assert error["code"] == "invalid_variables"
    assert "ticket" in str(error["details"]) and "nope" in str(error["details"])

    assert dev.put(f"{base}/{prompt_id}/labels/production", json={"version": 1}).status_code == 200
    assert dev.get(f"{base}/{prompt_id}/versions/production").json()["version"] == 1
    assert dev.put(f"{base}/{prompt_id}/labels/production", json={"version": 2}).status_code == 200
    assert dev.get(f"{base}/{prompt_id}").json()["labels"] == {"production": 2}
    diff = dev.get(f"{base}/{prompt_id}/diff", params={"from": 1, "to": "production"})
    assert diff.status_code == 200 and "brief" in str(diff.json())

    observer = client(
        system.url, invite_and_join(system.url, client(system.url, owner_token), tenant_id, "observer")
    )
    assert (
        observer.post(
            f"{base}/{prompt_id}/versions/2/render", json={"variables": {"ticket": "x"}}
        ).status_code
        == 200
    ), "rendering reads, so observers may render"
    assert observer.post(f"{base}/{prompt_id}/versions", json={"template": "x"}).status_code == 403


def test_tools_keep_secrets_out_of_their_config(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    leaked = demo.post(
        "/v1/tenants/demo/tools",
        json={
            "name": "weather_leaky",
            "kind": "http",
            "method": "GET",
            "url_template": "https://api.weather.example.com/v1?city={city}",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "headers": {"Authorization": "Bearer sk-live-123"},
            "allowed_hosts": ["api.weather.example.com"],
        },
    )
    assert leaked.status_code == 422, leaked.text
    ok = demo.post(
        "/v1/tenants/demo/tools",
        json={
            "name": f"weather_{system.topic_prefix[:8]}",
            "kind": "http",
            "method": "GET",
            "url_template": "https://api.weather.example.com/v1?city={city}",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "headers": {"Authorization": {"secret_ref": "weather_token"}},
            "allowed_hosts": ["api.weather.example.com"],
        },
    )
    assert ok.status_code == 201, ok.text
    assert "sk-" not in ok.text
    off_list = demo.post(
        "/v1/tenants/demo/tools",
        json={
            "name": "elsewhere",
            "kind": "http",
            "method": "GET",
            "url_template": "https://evil.example/x",
            "parameters": {"type": "object", "properties": {}},
            "allowed_hosts": ["api.weather.example.com"],
        },
    )
    assert off_list.status_code == 422


def test_experiment_definition_start_and_pending_status(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    agent_id = demo.post("/v1/tenants/demo/agents", json={"name": "exp target"}).json()["id"]
    assert (
        demo.post(f"/v1/tenants/demo/agents/{agent_id}/versions", json={"flow_graph": FLOW}).status_code
        == 201
    )
    dataset_id = demo.post("/v1/tenants/demo/datasets", json={"name": "qa"}).json()["id"]
    rows = b"".join(b'{"input": "q%d", "expected": "a%d"}\n' % (i, i) for i in range(5))
    uploaded = demo.post(
        f"/v1/tenants/demo/datasets/{dataset_id}/upload",
        content=rows,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert uploaded.status_code == 200 and uploaded.json()["row_count"] == 5
    # the run-executor learns agent versions from the registry's events: wait until it knows this one
    eventually(
        lambda: (
            demo.post("/v1/tenants/demo/runs", json={"agent_id": agent_id, "inputs": {}}).status_code == 201
        ),
        timeout_s=30,
    )
    body = {
        "name": "qa accuracy",
        "target": {"type": "agent_version", "agent_id": agent_id, "version": 1},
        "dataset_id": dataset_id,
        "concurrency": 2,
        "evaluators": [
            {"name": "exact", "type": "exact_match"},
            {"name": "shape", "type": "regex", "config": {"pattern": "^a\\d+$"}},
        ],
    }
    bad = demo.post(
        "/v1/tenants/demo/experiments",
        json={**body, "evaluators": [{"name": "r", "type": "regex", "config": {"pattern": "("}}]},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_experiment"
    created = demo.post("/v1/tenants/demo/experiments", json=body)
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    assert demo.get(f"/v1/tenants/demo/experiments/{experiment_id}/status").json()["status"] == "not_started"
    started = demo.post(f"/v1/tenants/demo/experiments/{experiment_id}/start")
    assert started.status_code == 202, started.text
    status = demo.get(f"/v1/tenants/demo/experiments/{experiment_id}/status").json()
    # the run-executor picks the start up at once, so the run may already have moved past `pending`
    assert status["status"] in ("pending", "running", "completed"), status
    assert (status["run_number"], status["examples_total"]) == (1, 5)
    done = finished_experiment(demo, "demo", experiment_id, timeout_s=120)
    assert done["status"] == "completed" and done["examples_scored"] == 5, done
    results = demo.get(f"/v1/tenants/demo/experiments/{experiment_id}/results").json()
    assert sorted(r["example_index"] for r in results["items"]) == [0, 1, 2, 3, 4]
