"""Tools over HTTP on real MongoDB and Kafka: CRUD, validation, secrets, name uniqueness under
concurrency, If-Match, idempotency, tenancy, events on the tool stream and rebuilding the view."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_registry.tools import handlers
from agent_registry.tools.domain import tool_stream
from agent_registry.tools.store import VIEWS as TOOL_VIEWS

from .conftest import Registry

pytestmark = pytest.mark.integration

WEATHER: dict[str, Any] = {
    "name": "weather",
    "description": "Current weather for a city",
    "kind": "http",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "units": {"type": "string", "enum": ["metric", "imperial"]},
        },
        "required": ["city"],
    },
    "method": "GET",
    "url_template": "https://api.weather.example.com/v1/current?city={city}&units={units}",
    "headers": {"Accept": "application/json", "Authorization": {"secret_ref": "weather_token"}},
    "timeout_ms": 5000,
    "allowed_hosts": ["api.weather.example.com"],
    "tags": ["weather"],
}
CALC: dict[str, Any] = {"name": "calc", "kind": "builtin", "builtin": "calculator", "tags": ["math"]}


def base(tenant: str) -> str:
    return f"/v1/tenants/{tenant}/tools"


def error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def stream_events(registry: Registry, tenant: str, tool_id: str) -> list[tuple[str, dict[str, Any]]]:
    events = await registry.runtime.store.read_stream(tool_stream(tenant, tool_id))
    return [(e.event_type, e.payload) for e in events]


async def test_tool_lifecycle_with_events(registry: Registry) -> None:
    tenant = registry.tenant()
    created = await registry.client.post(base(tenant), json=WEATHER)
    assert created.status_code == 201, created.text
    tool = created.json()
    path = f"{base(tenant)}/{tool['id']}"
    assert created.headers["etag"] == '"1"' and created.headers["location"] == path
    assert tool["id"].startswith("tol_")
    assert {k: tool[k] for k in WEATHER} == WEATHER
    assert (tool["builtin"], tool["status"], tool["metadata"], tool["version"]) == (None, "active", {}, 1)

    got = await registry.client.get(path)
    assert got.json() == tool and got.headers["etag"] == '"1"'
    updated = await registry.client.put(
        path, json={"timeout_ms": 8000, "description": None}, headers={"If-Match": '"1"'}
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["timeout_ms"], updated.json()["description"], updated.headers["etag"]) == (
        8000,
        None,
        '"2"',
    )
    assert updated.json()["url_template"] == WEATHER["url_template"]
    stale = await registry.client.put(path, json={"timeout_ms": 1}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and error(stale)["details"] == {"current_etag": '"2"'}
    noop = await registry.client.put(path, json={"timeout_ms": 8000})
    assert noop.status_code == 200 and noop.headers["etag"] == '"2"'
    assert (await registry.client.delete(path, headers={"If-Match": '"1"'})).status_code == 412
    assert (await registry.client.delete(path, headers={"If-Match": '"2"'})).status_code == 204
    assert (await registry.client.get(path)).status_code == 404
    assert (await registry.client.put(path, json={"timeout_ms": 3})).status_code == 404
    assert (await registry.client.delete(path)).status_code == 404

    events = await stream_events(registry, tenant, tool["id"])
    assert [t for t, _ in events] == ["registry.ToolCreated", "registry.ToolUpdated", "registry.ToolDeleted"]
    assert events[0][1]["headers"]["Authorization"] == {"secret_ref": "weather_token"}
    assert events[1][1]["changed"] == ["description", "timeout_ms"]
    assert events[2][1] == {"tool_id": tool["id"], "name": "weather", "deleted_by": "usr_test"}

    again = await registry.client.post(base(tenant), json=WEATHER)
    assert again.status_code == 201, "deleting a tool frees its name"


async def test_builtin_tools_and_switching_kind(registry: Registry) -> None:
    tenant = registry.tenant()
    calc = await registry.create(base(tenant), CALC)
    assert (
        calc["parameters"]["required"] == ["expression"] and calc["method"] is None and calc["headers"] == {}
    )
    unknown = await registry.client.post(base(tenant), json={**CALC, "name": "sh", "builtin": "shell"})
    assert unknown.status_code == 422 and error(unknown)["details"][0]["loc"] == ["body", "builtin"]
    fetch = await registry.client.post(
        base(tenant), json={"name": "fetch", "kind": "builtin", "builtin": "http_get_allowlisted"}
    )
    assert [p["code"] for p in error(fetch)["details"]] == ["missing_allowed_hosts"]

    tool = await registry.create(base(tenant), WEATHER)
    switched = await registry.client.put(
        f"{base(tenant)}/{tool['id']}",
        json={
            "kind": "builtin",
            "builtin": "http_get_allowlisted",
            "parameters": {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
        },
    )
    assert switched.status_code == 200, switched.text
    assert (switched.json()["url_template"], switched.json()["headers"], switched.json()["method"]) == (
        None,
        {},
        None,
    )
    back = await registry.client.put(f"{base(tenant)}/{tool['id']}", json={"kind": "http"})
    assert back.status_code == 422
    assert {p["code"] for p in error(back)["details"]} == {"invalid_method", "missing_url"}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"headers": {"Authorization": "Bearer sk-live-123"}},
            [("secret_in_header", ["body", "headers", "Authorization"])],
        ),
        ({"headers": {"X-Api-Key": "abc"}}, [("secret_in_header", ["body", "headers", "X-Api-Key"])]),
        ({"headers": {"Cookie": "session=1"}}, [("secret_in_header", ["body", "headers", "Cookie"])]),
        (
            {"headers": {"X-Service-Token": "t"}},
            [("secret_in_header", ["body", "headers", "X-Service-Token"])],
        ),
        (
            {"url_template": "https://api.weather.example.com/v1?city={city}&api_key=abc123"},
            [("secret_in_url", ["body", "url_template"])],
        ),
        (
            {"url_template": "https://user:pw@api.weather.example.com/v1?city={city}"},
            [("secret_in_url", ["body", "url_template"])],
        ),
        (
            {"url_template": "https://evil.example.net/{city}"},
            [("host_not_allowed", ["body", "allowed_hosts"])],
        ),
        (
            {"url_template": "http://169.254.169.254/{city}", "allowed_hosts": ["*.example.com"]},
            [("host_not_allowed", ["body", "allowed_hosts"])],
        ),
        (
            {"url_template": "https://{city}.example.com/"},
            [("placeholder_in_host", ["body", "url_template"])],
        ),
        (
            {"url_template": "https://api.weather.example.com/{town}"},
            [("undeclared_argument", ["body", "url_template"])],
        ),
        (
            {"parameters": {"type": "object", "properties": {"city": {"type": "text"}, "units": {}}}},
            [("invalid_schema_type", ["body", "parameters", "properties", "city", "type"])],
        ),
        (
            {
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "units": {}},
                    "required": ["town"],
                }
            },
            [("unknown_required_property", ["body", "parameters", "required", 0])],
        ),
        (
            {
                "parameters": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"city": {}, "units": {}},
                }
            },
            [("invalid_key", ["body", "parameters", "$schema"])],
        ),
        ({"name": "has space"}, [("invalid_name", ["body", "name"])]),
        (
            {"allowed_hosts": ["api.weather.example.com", "https://x.io"]},
            [("invalid_host", ["body", "allowed_hosts", 1])],
        ),
        ({"metadata": {"a.b": 1}}, [("invalid_key", ["body", "metadata", "a.b"])]),
    ],
)
async def test_invalid_tools_are_422_naming_the_path(
    registry: Registry, overrides: dict[str, Any], expected: list[tuple[str, list[Any]]]
) -> None:
    tenant = registry.tenant()
    response = await registry.client.post(base(tenant), json={**WEATHER, **overrides})
    assert response.status_code == 422, response.text
    assert error(response)["code"] == "invalid_tool"
    assert [(p["code"], p["loc"]) for p in error(response)["details"]] == expected
    assert (await registry.client.get(base(tenant))).json()["items"] == [], "nothing stored"
    listed = await registry.client.post(base(tenant), json=WEATHER)
    assert listed.status_code == 201, "a refused request leaves the name free"


async def test_schema_limits_are_422(registry: Registry) -> None:
    tenant = registry.tenant()
    for overrides in (
        {"timeout_ms": 0},
        {"timeout_ms": 120_001},
        {"kind": "grpc"},
        {"method": "TRACE"},
        {"extra": 1},
    ):
        response = await registry.client.post(base(tenant), json={**WEATHER, **overrides})
        assert response.status_code == 422 and error(response)["code"] == "validation_error", overrides
    ok = await registry.client.post(base(tenant), json={**WEATHER, "timeout_ms": 120_000})
    assert ok.status_code == 201


async def test_concurrent_creates_of_one_name_have_one_winner(registry: Registry) -> None:
    tenant = registry.tenant()
    bodies = [
        {**CALC, "name": "Lookup" if i % 2 else "lookup", "description": f"writer {i}"} for i in range(10)
    ]
    responses = await asyncio.gather(*(registry.client.post(base(tenant), json=b) for b in bodies))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 201).json()
    for loser in (r for r in responses if r.status_code == 409):
        assert (
            error(loser)["code"] == "tool_name_taken" and error(loser)["details"]["tool_id"] == winner["id"]
        )
    listed = (await registry.client.get(base(tenant))).json()["items"]
    assert [t["id"] for t in listed] == [winner["id"]]


async def test_concurrent_renames_to_one_name_have_one_winner(registry: Registry) -> None:
    tenant = registry.tenant()
    tools = [await registry.create(base(tenant), {**CALC, "name": f"t{i}"}) for i in range(5)]
    responses = await asyncio.gather(
        *(registry.client.put(f"{base(tenant)}/{t['id']}", json={"name": "shared"}) for t in tools)
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
    names = sorted(t["name"] for t in (await registry.client.get(base(tenant))).json()["items"])
    assert names.count("shared") == 1 and len(names) == 5
    loser = next(t for t, r in zip(tools, responses, strict=True) if r.status_code == 409)
    assert (await registry.client.post(base(tenant), json={**CALC, "name": loser["name"]})).status_code == 409
    winner = next(t for t, r in zip(tools, responses, strict=True) if r.status_code == 200)
    assert (
        await registry.client.post(base(tenant), json={**CALC, "name": winner["name"]})
    ).status_code == 201, "the winner's old name is free"


async def test_filters_and_pagination(registry: Registry) -> None:
    tenant = registry.tenant()
    weather = await registry.create(base(tenant), WEATHER)
    calc = await registry.create(base(tenant), CALC)
    clock = await registry.create(
        base(tenant), {"name": "clock", "kind": "builtin", "builtin": "current_time", "status": "inactive"}
    )

    async def ids(**params: Any) -> list[str]:
        response = await registry.client.get(base(tenant), params=params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert await ids() == [weather["id"], calc["id"], clock["id"]]
    assert await ids(kind="builtin") == [calc["id"], clock["id"]]
    assert await ids(kind="http") == [weather["id"]]
    assert await ids(tag="math") == [calc["id"]]
    assert await ids(status="inactive") == [clock["id"]]
    assert await ids(status="inactive", kind="http") == []
    first = (await registry.client.get(base(tenant), params={"limit": 2})).json()
    assert [t["id"] for t in first["items"]] == [weather["id"], calc["id"]] and first["next_cursor"]
    rest = (
        await registry.client.get(base(tenant), params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [t["id"] for t in rest["items"]] == [clock["id"]] and rest["next_cursor"] is None
    assert (await registry.client.get(base(tenant), params={"kind": "grpc"})).status_code == 422


async def test_idempotency_key_replays_a_create(registry: Registry) -> None:
    tenant = registry.tenant()
    first = await registry.client.post(base(tenant), json=CALC, headers={"Idempotency-Key": "t-1"})
    again = await registry.client.post(base(tenant), json=CALC, headers={"Idempotency-Key": "t-1"})
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = await registry.client.post(
        base(tenant), json={**CALC, "name": "x"}, headers={"Idempotency-Key": "t-1"}
    )
    assert other.status_code == 422 and error(other)["code"] == "idempotency_key_reused"
    assert len((await registry.client.get(base(tenant))).json()["items"]) == 1


async def test_tenants_never_see_each_other(registry: Registry) -> None:
    owner, other = registry.tenant(), registry.tenant()
    tool = await registry.create(base(owner), WEATHER)
    twin = await registry.client.post(base(other), json=WEATHER)
    assert twin.status_code == 201, "names are unique per tenant only"
    for method, body in (("GET", None), ("PUT", {"timeout_ms": 1}), ("DELETE", None)):
        response = await registry.client.request(method, f"{base(other)}/{tool['id']}", json=body)
        assert response.status_code == 404, (method, response.text)
    assert [t["id"] for t in (await registry.client.get(base(other))).json()["items"]] == [twin.json()["id"]]
    assert (await registry.client.get(f"{base(owner)}/{tool['id']}")).json()["timeout_ms"] == 5000


async def test_rebuilt_tool_view_equals_the_live_one(registry: Registry) -> None:
    tenant = registry.tenant()
    tool = await registry.create(base(tenant), WEATHER)
    await registry.client.put(f"{base(tenant)}/{tool['id']}", json={"name": "forecast", "tags": ["a"]})
    gone = await registry.create(base(tenant), CALC)
    await registry.client.delete(f"{base(tenant)}/{gone['id']}")

    async def snapshot() -> dict[str, list[dict[str, Any]]]:
        db = registry.runtime.db
        return {name: [d async for d in db[name].find({}).sort("_id", 1)] for name in TOOL_VIEWS}

    before = await snapshot()
    assert any(d["_id"] == gone["id"] and d["status"] == "deleted" for d in before["tools"])
    await registry.runtime.projector.rebuild()
    assert await snapshot() == before


async def test_a_claim_left_by_a_crashed_create_is_taken_over_after_its_lease(registry: Registry) -> None:
    tenant = registry.tenant()
    claims = registry.runtime.db["tool_names"]
    now = datetime.now(UTC)
    for name, age in (
        ("fresh", timedelta(seconds=1)),
        ("orphan", handlers.CLAIM_LEASE + timedelta(seconds=5)),
    ):
        await claims.insert_one(
            {
                "_id": f"{tenant}:{name}",
                "tenant_id": tenant,
                "name_key": name,
                "tool_id": f"tol_crashed_{name}",
                "claim_id": "c",
                "claimed_at": now - age,
            }
        )
    fresh = await registry.client.post(base(tenant), json={**CALC, "name": "fresh"})
    assert fresh.status_code == 409, "a create may still be recording under a fresh claim"
    orphan = await registry.client.post(base(tenant), json={**CALC, "name": "orphan"})
    assert orphan.status_code == 201, orphan.text
    claim = await claims.find_one({"_id": f"{tenant}:orphan"})
    assert claim is not None and claim["tool_id"] == orphan.json()["id"]
