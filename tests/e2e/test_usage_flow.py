"""Usage through the gateway and the usage-meter: a run's tokens in the daily view exactly, bulk
ingestion with per-event rejection and retry safety, and a free tenant stopped at its monthly request
limit with 429 `quota_exceeded` before its run reaches a provider."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from tests.e2e.conftest import System
from tests.e2e.helpers import client, eventually, llm_flow, new_tenant_with_admin

pytestmark = pytest.mark.e2e

FLOW = llm_flow(
    {"provider": "openai", "model": "gpt-4o-mini", "prompt": "Say {{ inputs.message }}"},
    output={"path": "draft.text"},
)


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def agent_with_flow(owner: httpx.Client, tenant_id: str) -> str:
    agent_id = owner.post(f"/v1/tenants/{tenant_id}/agents", json={"name": "metered"}).json()["id"]
    published = owner.post(f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions", json={"flow_graph": FLOW})
    assert published.status_code == 201, published.text
    return str(agent_id)


def start_run(owner: httpx.Client, tenant_id: str, agent_id: str) -> httpx.Response:
    return owner.post(
        f"/v1/tenants/{tenant_id}/runs",
        json={"agent_id": agent_id, "inputs": {"message": "hello brave new world"}},
    )


def daily_meters(owner: httpx.Client, tenant_id: str) -> dict[str, dict[str, object]]:
    reply = owner.get(f"/v1/tenants/{tenant_id}/usage/daily", params={"from": today(), "to": today()})
    assert reply.status_code == 200, reply.text
    items = reply.json()["items"]
    return items[0]["meters"] if items else {}


def test_a_runs_tokens_appear_in_the_daily_view_exactly(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="pro")
    owner = client(system.url, owner_token)
    agent_id = agent_with_flow(owner, tenant_id)
    run = eventually(lambda: (r := start_run(owner, tenant_id, agent_id)).status_code == 201 and r.json())
    done = eventually(
        lambda: (
            (r := owner.get(f"/v1/tenants/{tenant_id}/runs/{run['id']}").json())["status"]
            in ("succeeded", "failed")
            and r
        )
    )
    assert done["status"] == "succeeded", done
    # the fake OpenAI server counts words: 5 prompt and 6 completion tokens
    meters = eventually(
        lambda: (
            (m := daily_meters(owner, tenant_id))
            and {"tokens_in", "tokens_out", "requests"} <= m.keys()
            and m
        ),
        timeout_s=30,
    )
    assert Decimal(str(meters["tokens_in"]["quantity"])) == 5
    assert Decimal(str(meters["tokens_out"]["quantity"])) == 6
    assert Decimal(str(meters["requests"]["quantity"])) == 1
    expected_in = Decimal(5) * Decimal("0.15") / 1_000_000
    assert Decimal(str(meters["tokens_in"]["cost_usd_estimate"])) == expected_in
    grouped = owner.get(
        f"/v1/tenants/{tenant_id}/usage/daily",
        params={"from": today(), "to": today(), "meter": "tokens_out", "group_by": "model"},
    ).json()["items"][0]["meters"]["tokens_out"]["groups"]
    assert {k: Decimal(v["quantity"]) for k, v in grouped.items()} == {"gpt-4o-mini": 6}
    dashboard = owner.get(f"/v1/tenants/{tenant_id}/analytics/dashboard").json()
    assert Decimal(dashboard["totals"]["tokens"]) == 11


def test_bulk_ingestion_rejects_the_bad_event_and_counts_the_rest_once(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="pro")
    owner = client(system.url, owner_token)
    now = datetime.now(UTC).isoformat()
    run = uuid.uuid4().hex[:8]
    events = [
        {"event_id": f"{run}-1", "meter": "egress_mb", "quantity": "1.5", "timestamp": now},
        {"event_id": f"{run}-2", "meter": "egress_mb", "quantity": "2.25", "timestamp": now},
        {"event_id": f"{run}-3", "meter": "teleport_mb", "quantity": "1", "timestamp": now},
        {"event_id": f"{run}-4", "meter": "egress_mb", "quantity": "-1", "timestamp": now},
    ]
    path = f"/v1/tenants/{tenant_id}/usage/events"
    first = owner.post(path, json={"events": events})
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    reasons = {r["event_id"]: r["reason"] for r in body["results"] if r["status"] == "rejected"}
    assert reasons == {f"{run}-3": "unknown_meter", f"{run}-4": "negative_quantity"}
    retried = owner.post(path, json={"events": events[:2]})  # a client retry of the good ones
    assert retried.status_code == 202 and retried.json()["accepted"] == 2
    eventually(
        lambda: (
            (m := daily_meters(owner, tenant_id)).get("egress_mb")
            and Decimal(str(m["egress_mb"]["quantity"])) == Decimal("3.75")
        ),
        timeout_s=30,
    )
    assert daily_meters(owner, tenant_id)["egress_mb"]["events"] == 2, "each event id counted once"
    # the platform admin exports the accepted events of the tenant (JSON lines)
    export = admin.get(
        "/v1/admin/usage/export",
        params={"tenant_id": tenant_id, "from": today(), "to": today(), "format": "jsonl"},
    )
    assert export.status_code == 200, export.text
    assert export.text.count("egress_mb") == 2


def test_a_free_tenant_over_its_request_limit_gets_quota_exceeded(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="free")
    owner = client(system.url, owner_token)
    agent_id = agent_with_flow(owner, tenant_id)
    first = eventually(lambda: (r := start_run(owner, tenant_id, agent_id)).status_code == 201 and r)
    assert first.status_code == 201
    # The free plan allows 1,000 requests a month: report the rest of them (e.g. from a batch job).
    used = owner.post(
        f"/v1/tenants/{tenant_id}/usage/events",
        json={"events": [{"event_id": "batch-1", "meter": "requests", "quantity": "999"}]},
    )
    assert used.status_code == 202 and used.json()["accepted"] == 1, used.text
    refused = eventually(
        lambda: (r := start_run(owner, tenant_id, agent_id)).status_code == 429 and r, timeout_s=30
    )
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"]["meter"] == "requests" and error["details"]["limit"] == 1000
    assert Decimal(error["details"]["used"]) >= 1000
    now = datetime.now(UTC)
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    assert datetime.fromisoformat(error["details"]["resets_at"]) == next_month
    assert int(refused.headers["Retry-After"]) > 0
    # reading is still allowed
    assert owner.get(f"/v1/tenants/{tenant_id}/runs").status_code == 200
