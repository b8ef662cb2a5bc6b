"""The walking skeleton end to end, through the public API, on real Kafka and MongoDB."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import System
from tests.e2e.helpers import FLOW, client, eventually, invite_and_join, new_tenant_with_admin, sign_in
from tests.support.kafka import read_topic

pytestmark = pytest.mark.e2e

ENVELOPE_FIELDS = {
    "event_id",
    "event_type",
    "schema_version",
    "stream_id",
    "stream_version",
    "tenant_id",
    "occurred_at",
    "producer",
    "correlation_id",
    "causation_id",
    "payload",
}


def test_every_service_is_ready_and_health_is_reported(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    reply = admin.get("/v1/admin/system/health")
    assert reply.status_code == 200, reply.text
    services = reply.json()["services"]
    assert set(services) == {
        "gateway",
        "agent-registry",
        "run-executor",
        "usage-meter",
        "billing",
        "toolset",
        "monitor",
    }
    assert all(s["ready"] for s in services.values())
    for name in services:
        if name != "gateway":
            assert httpx.get(f"{system.running.url(name)}/healthz").json()["status"] == "ok"


def test_migrations_created_system_and_demo_tenants(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    tenant = demo.get("/v1/tenants/demo").json()
    assert tenant["plan"] == "pro" and tenant["limits"]["max_projects"] == 50
    assert demo.get("/v1/tenants").json()["items"][0]["tenant_id"] == "demo"
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    ids = {t["tenant_id"] for t in admin.get("/v1/admin/tenants", params={"limit": 200}).json()["items"]}
    assert {"system", "demo"} <= ids
    assert admin.get("/v1/tenants/system").json()["limits"]["max_users"] == -1
    projects = demo.get("/v1/tenants/demo/projects").json()["items"]
    assert any(p["name"] for p in projects), "sample data exists in the demo tenant"


def test_sign_in_create_invite_build_and_read_back(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin)
    owner = client(system.url, owner_token)
    dev = client(system.url, invite_and_join(system.url, owner, tenant_id, "developer"))

    me = dev.get("/v1/auth/me").json()
    assert me["tenant_id"] == tenant_id and me["role"] == "developer"

    project = dev.post(f"/v1/tenants/{tenant_id}/projects", json={"name": "Support bot", "tags": ["support"]})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    agent = dev.post(
        f"/v1/tenants/{tenant_id}/agents",
        json={"name": "Triage", "project_id": project_id, "tags": ["triage"]},
    )
    assert agent.status_code == 201, agent.text
    agent_id = agent.json()["id"]
    version = dev.post(
        f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions",
        json={"flow_graph": FLOW, "config": {"temperature": 0.1}, "changelog": "first"},
    )
    assert version.status_code == 201, version.text
    assert version.json()["version"] == 1

    got = dev.get(f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions/1").json()
    assert [n["id"] for n in got["flow_graph"]["nodes"]] == ["in", "draft", "out"]
    flow_file = dev.get(f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions/1/files/flow-graph.json")
    assert flow_file.status_code == 200 and len(flow_file.json()["nodes"]) == 3
    assert dev.get(f"/v1/tenants/{tenant_id}/projects/{project_id}").json()["name"] == "Support bot"
    listed = dev.get(f"/v1/tenants/{tenant_id}/agents", params={"tag": "triage"}).json()["items"]
    assert [a["id"] for a in listed] == [agent_id]

    # The tenant's view counts the project once the gateway consumed ProjectCreated from Kafka.
    eventually(lambda: owner.get(f"/v1/tenants/{tenant_id}").json()["current_usage"]["projects"] == 1)

    # The events are on the registry topic, in the envelope, keyed by tenant. The outbox relay
    # publishes them after the answers, so the last one may still be on its way: read until it is in.
    wanted = {"registry.ProjectCreated", "registry.AgentCreated", "registry.AgentVersionPublished"}
    seen: list[str] = []

    def registry_events() -> list[dict[str, Any]] | None:
        topic = system.topic("ailab.registry.events")
        records = asyncio.run(read_topic(system.infra.kafka_bootstrap_servers, topic, until=1, timeout_s=10))
        events = [json.loads(r.value or b"") for r in records if r.key == tenant_id.encode()]
        seen[:] = [e["event_type"] for e in events]
        return events if wanted <= set(seen) else None

    mine: list[dict[str, Any]] = eventually(registry_events, describe=lambda: seen)
    for event in mine:
        assert ENVELOPE_FIELDS <= set(event)
        assert event["tenant_id"] == tenant_id and event["producer"] == "agent-registry"
    tenancy_wanted = {"tenancy.TenantCreated", "tenancy.UserInvited", "tenancy.UserJoined"}
    tenancy_types: set[str] = set()

    def tenancy_events() -> bool:
        topic = system.topic("ailab.tenancy.events")
        records = asyncio.run(read_topic(system.infra.kafka_bootstrap_servers, topic, until=1, timeout_s=10))
        mine = [json.loads(r.value or b"") for r in records if r.key == tenant_id.encode()]
        tenancy_types.clear()
        tenancy_types.update(e["event_type"] for e in mine)
        return tenancy_wanted <= tenancy_types

    eventually(tenancy_events, describe=lambda: tenancy_types)

    # Audit: every mutating request is recorded and readable by the tenant admin.
    audit = owner.get(f"/v1/tenants/{tenant_id}/audit", params={"limit": 200}).json()["items"]
    actions = [a["action"] for a in audit]
    assert "POST /v1/tenants/{tenant_id}/projects" in actions
    assert "POST /v1/tenants/{tenant_id}/agents/{agent_id}/versions" in actions
    entry = next(a for a in audit if a["action"] == "POST /v1/tenants/{tenant_id}/projects")
    assert entry["user_id"] == me["sub"] and entry["result"] == "success" and entry["source_ip"]
    assert dev.get(f"/v1/tenants/{tenant_id}/audit").status_code == 403  # developers cannot read audit


def test_second_tenant_gets_403_on_every_route(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_a, _, owner_a = new_tenant_with_admin(system.url, admin)
    _, _, owner_b = new_tenant_with_admin(system.url, admin)
    a = client(system.url, owner_a)
    project_id = a.post(f"/v1/tenants/{tenant_a}/projects", json={"name": "secret"}).json()["id"]
    agent_id = a.post(f"/v1/tenants/{tenant_a}/agents", json={"name": "secret"}).json()["id"]
    a.post(f"/v1/tenants/{tenant_a}/agents/{agent_id}/versions", json={"flow_graph": FLOW})
    key_id = a.post(f"/v1/tenants/{tenant_a}/api-keys", json={"name": "k"}).json()["key_id"]
    user_id = a.get(f"/v1/tenants/{tenant_a}/users").json()["items"][0]["user_id"]

    from gateway.entrypoints.proxy import FORWARDED

    t = f"/v1/tenants/{tenant_a}"
    routes = [
        (
            m,
            p.replace("/v1/tenants/{tenant_id}", t)
            .replace("{project_id}", project_id)
            .replace("{agent_id}", agent_id)
            .replace("{version}", "1")
            .replace("{name}", "config.json"),
        )
        for _, _, table in FORWARDED
        for m, p, _, _ in table
    ]
    # ids of other kinds need not exist: the tenant check comes first
    routes = [(m, re.sub(r"\{[a-z_]+\}", "x1", p)) for m, p in routes]
    routes += [
        ("GET", t),
        ("PUT", t),
        ("POST", f"{t}/users/invite"),
        ("GET", f"{t}/users"),
        ("DELETE", f"{t}/users/{user_id}"),
        ("GET", f"{t}/api-keys"),
        ("POST", f"{t}/api-keys"),
        ("DELETE", f"{t}/api-keys/{key_id}"),
        ("GET", f"{t}/audit"),
    ]
    b = client(system.url, owner_b)
    for method, path in routes:
        reply = b.request(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)
        assert reply.status_code == 403, f"{method} {path} -> {reply.status_code}"
        assert reply.json()["error"]["code"] == "tenant_mismatch"
    for method, path in [
        ("GET", "/v1/admin/tenants"),
        ("POST", "/v1/admin/tenants"),
        ("GET", f"/v1/admin/tenants/{tenant_a}"),
        ("PUT", f"/v1/admin/tenants/{tenant_a}"),
        ("GET", "/v1/admin/system/health"),
        ("GET", "/v1/admin/usage/export"),
        ("GET", "/v1/admin/billing/reconcile"),
    ]:
        reply = b.request(method, path, json={"name": "x"} if method in ("POST", "PUT") else None)
        assert reply.status_code == 403, f"{method} {path} -> {reply.status_code}"
    # and tenant A's data is untouched
    assert a.get(f"{t}/projects/{project_id}").json()["name"] == "secret"


def test_stale_if_match_gets_412(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    created = demo.post("/v1/tenants/demo/projects", json={"name": "etag test"})
    etag = created.headers["etag"]
    url = f"/v1/tenants/demo/projects/{created.json()['id']}"
    first = demo.put(url, json={"name": "renamed"}, headers={"If-Match": etag})
    assert first.status_code == 200, first.text
    stale = demo.put(url, json={"name": "lost update"}, headers={"If-Match": etag})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "precondition_failed"
    assert demo.get(url).json()["name"] == "renamed"
    tenant = demo.get("/v1/tenants/demo")
    assert (
        demo.put("/v1/tenants/demo", json={"name": "Demo Org"}, headers={"If-Match": '"0"'}).status_code
        == 412
    )
    assert (
        demo.put(
            "/v1/tenants/demo",
            json={"name": "Demo Organization"},
            headers={"If-Match": tenant.headers["etag"]},
        ).status_code
        == 200
    )


def test_roles_unknown_and_suspended_tenants(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin)
    owner = client(system.url, owner_token)
    observer = client(system.url, invite_and_join(system.url, owner, tenant_id, "observer"))
    analyst = client(system.url, invite_and_join(system.url, owner, tenant_id, "analyst"))
    assert observer.get(f"/v1/tenants/{tenant_id}/projects").status_code == 200
    denied = observer.post(f"/v1/tenants/{tenant_id}/projects", json={"name": "x"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert (
        analyst.post(
            f"/v1/tenants/{tenant_id}/users/invite", json={"email": "x@acme.example", "role": "developer"}
        ).status_code
        == 403
    )
    assert (
        owner.post(
            f"/v1/tenants/{tenant_id}/users/invite",
            json={"email": "y@acme.example", "role": "platform_admin"},
        ).status_code
        == 403
    )
    assert admin.get("/v1/tenants/no-such-tenant").status_code == 404
    assert admin.get("/v1/tenants/no-such-tenant").json()["error"]["code"] == "tenant_not_found"
    assert client(system.url).get(f"/v1/tenants/{tenant_id}").status_code == 401
    assert (
        client(system.url, "garbage").get(f"/v1/tenants/{tenant_id}").json()["error"]["code"]
        == "invalid_token"
    )

    assert admin.put(f"/v1/admin/tenants/{tenant_id}", json={"status": "suspended"}).status_code == 200
    suspended = owner.get(f"/v1/tenants/{tenant_id}/projects")
    assert suspended.status_code == 403 and suspended.json()["error"]["code"] == "tenant_suspended"
    assert admin.put(f"/v1/admin/tenants/{tenant_id}", json={"status": "active"}).status_code == 200
    assert owner.get(f"/v1/tenants/{tenant_id}/projects").status_code == 200


def test_bad_input_is_4xx_with_details_never_500(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    reply = demo.post("/v1/tenants/demo/projects", json={"name": 42, "unknown": True})
    assert reply.status_code == 422
    body = reply.json()["error"]
    assert body["code"] == "validation_error" and body["request_id"] and body["details"]
    agent_id = demo.post("/v1/tenants/demo/agents", json={"name": "flow check"}).json()["id"]
    dangling = {"nodes": [{"id": "in", "type": "input"}], "edges": [{"source": "in", "target": "ghost"}]}
    bad_flow = demo.post(f"/v1/tenants/demo/agents/{agent_id}/versions", json={"flow_graph": dangling})
    assert bad_flow.status_code == 422, bad_flow.text
    unknown_type = {"nodes": [{"id": "x", "type": "teleport"}], "edges": []}
    assert (
        demo.post(
            f"/v1/tenants/demo/agents/{agent_id}/versions", json={"flow_graph": unknown_type}
        ).status_code
        == 422
    )
    assert demo.post("/v1/admin/tenants", json={"name": "x"}).status_code == 403
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    assert admin.post("/v1/admin/tenants", json={"tenant_id": "Bad Id!", "name": "x"}).status_code == 422
    assert (
        httpx.post(
            f"{system.url}/v1/auth/token", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert demo.get("/v1/tenants/demo/projects", params={"cursor": "%%%"}).status_code == 400


def test_idempotency_key_replays_create(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    headers = {"Idempotency-Key": "create-once-" + system.topic_prefix}
    first = demo.post("/v1/tenants/demo/projects", json={"name": "once"}, headers=headers)
    second = demo.post("/v1/tenants/demo/projects", json={"name": "once"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    other = demo.post("/v1/tenants/demo/projects", json={"name": "different"}, headers=headers)
    assert other.status_code == 422


def test_api_keys_and_login_rate_limit(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    created = demo.post("/v1/tenants/demo/api-keys", json={"name": "ci", "role": "observer"})
    assert created.status_code == 201
    secret, key_id = created.json()["api_key"], created.json()["key_id"]
    listed = demo.get("/v1/tenants/demo/api-keys").json()["items"]
    assert all("api_key" not in k for k in listed) and any(k["key_id"] == key_id for k in listed)
    keyed = client(system.url, secret)
    assert keyed.get("/v1/tenants/demo/projects").status_code == 200
    assert keyed.post("/v1/tenants/demo/projects", json={"name": "x"}).status_code == 403  # observer key
    assert httpx.get(f"{system.url}/v1/tenants/demo", headers={"X-API-Key": secret}).status_code == 200
    assert demo.delete(f"/v1/tenants/demo/api-keys/{key_id}").status_code == 204
    assert keyed.get("/v1/tenants/demo/projects").status_code == 401

    email = f"nobody-{system.topic_prefix}@acme.example"
    codes = [
        httpx.post(f"{system.url}/v1/auth/token", json={"email": email, "password": "wrong"}).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    assert sign_in(system.url, system.demo_email, system.demo_password)


def test_jwks_verifies_issued_tokens(system: System) -> None:
    import jwt

    token = system.token(system.demo_email, system.demo_password)
    jwks = httpx.get(f"{system.url}/.well-known/jwks.json").json()
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="ailab")
    assert claims["tenant_id"] == "demo" and claims["role"] == "tenant_admin"
    assert claims["plan_limits"]["max_requests_per_month"] == 50000


def test_openapi_documents_forwarded_routes_with_schemas(system: System) -> None:
    doc = httpx.get(f"{system.url}/openapi.json").json()
    post_agent = doc["paths"]["/v1/tenants/{tenant_id}/agents"]["post"]
    assert "requestBody" in post_agent
    assert any(
        p["name"] == "agent_id"
        for p in doc["paths"]["/v1/tenants/{tenant_id}/agents/{agent_id}"]["get"]["parameters"]
    )
    # every service's forwarded routes carry that service's schemas
    assert "requestBody" in doc["paths"]["/v1/tenants/{tenant_id}/runs"]["post"]
    assert "requestBody" in doc["paths"]["/v1/tenants/{tenant_id}/billing/plan"]["put"]
    assert "requestBody" in doc["paths"]["/v1/tenants/{tenant_id}/usage/events"]["post"]
    month = doc["paths"]["/v1/admin/billing/reconcile"]["get"]["parameters"]
    assert any(p["name"] == "month" for p in month)
    for path in (
        "/v1/auth/token",
        "/webhooks/stripe",
        "/v1/tenants/{tenant_id}/users/invite",
        "/v1/admin/tenants",
        "/v1/admin/system/health",
        "/v1/tenants/{tenant_id}/audit",
        "/.well-known/jwks.json",
    ):
        assert path in doc["paths"], path


def test_trace_context_flows_from_http_through_services_to_kafka(system: System) -> None:
    demo = client(system.url, system.token(system.demo_email, system.demo_password))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = demo.post(
        "/v1/tenants/demo/projects",
        json={"name": "traced"},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Request-ID": "req-traced-1"},
    )
    assert reply.status_code == 201, reply.text
    assert reply.headers["x-request-id"] == "req-traced-1"
    project_id = reply.json()["id"]

    def traced_record() -> dict[str, bytes] | None:
        records = asyncio.run(
            read_topic(
                system.infra.kafka_bootstrap_servers,
                system.topic("ailab.registry.events"),
                until=1,
                timeout_s=5,
            )
        )
        for r in records:
            body = json.loads(r.value or b"")
            if body["payload"].get("project_id") == project_id:
                return {**dict(r.headers), "correlation_id": body["correlation_id"].encode()}
        return None

    headers = eventually(traced_record)
    assert trace_id in headers["traceparent"].decode(), "the gateway's trace continues on the Kafka message"
    assert headers["event_type"] == b"registry.ProjectCreated"
    assert headers["correlation_id"] == b"req-traced-1", "the request id becomes the correlation id"
