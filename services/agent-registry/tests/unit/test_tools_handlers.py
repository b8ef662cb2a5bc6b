"""Tool use cases over the in-memory fakes: defaults, updates, name claims and their recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_registry.adapters.memory import sequential_ids
from agent_registry.domain.commands import Precondition
from agent_registry.domain.errors import NotFound, PreconditionFailed
from agent_registry.tools import handlers
from agent_registry.tools.domain import CreateTool, DeleteTool, InvalidTool, ToolNameTaken, UpdateTool
from agent_registry.tools.memory import InMemoryNameClaims, InMemoryTools
from agent_registry.tools.ports import NameClaim, ToolFilter, ToolPorts
from agent_registry.tools.validation import BUILTINS
from ailab_runtime.errors import ApiError

pytestmark = pytest.mark.unit

T = "t1"
HTTP: dict[str, Any] = {
    "name": "weather",
    "kind": "http",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "method": "get",
    "url_template": "https://api.example.com/weather?city={city}",
    "headers": {"Authorization": {"secret_ref": "weather_token"}},
    "allowed_hosts": ["API.example.com", "api.example.com"],
    "tags": ["w", "w"],
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake() -> InMemoryTools:
    return InMemoryTools()


@pytest.fixture
def claims() -> InMemoryNameClaims:
    return InMemoryNameClaims()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ports(fake: InMemoryTools, claims: InMemoryNameClaims, clock: Clock) -> ToolPorts:
    return ToolPorts(
        views=fake,
        recorder=fake,
        claims=claims,
        stream_version=fake.stream_version,
        new_id=sequential_ids(),
        clock=clock,
    )


async def test_create_normalizes_and_fills_defaults(ports: ToolPorts, fake: InMemoryTools) -> None:
    tool = await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    assert (tool.id, tool.method, tool.allowed_hosts, tool.tags, tool.timeout_ms, tool.status) == (
        "tol_0001",
        "GET",
        ["api.example.com"],
        ["w"],
        10_000,
        "active",
    )
    calc = await handlers.create_tool(
        CreateTool(T, "u1", {"name": "calc", "kind": "builtin", "builtin": "calculator"}), ports
    )
    assert calc.parameters == BUILTINS["calculator"]["parameters"] and calc.headers == {}
    payload = fake.streams[f"tool:{T}:{tool.id}"][0].payload
    assert payload["headers"] == {"Authorization": {"secret_ref": "weather_token"}}


async def test_names_are_unique_per_tenant_ignoring_case(
    ports: ToolPorts, claims: InMemoryNameClaims
) -> None:
    first = await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    with pytest.raises(ToolNameTaken) as caught:
        await handlers.create_tool(CreateTool(T, "u1", {**HTTP, "name": "WEATHER"}), ports)
    assert caught.value.details == {"name": "WEATHER", "tool_id": first.id}
    other_tenant = await handlers.create_tool(CreateTool("t2", "u1", HTTP), ports)
    assert other_tenant.name == "weather"
    assert set(claims.claims) == {(T, "weather"), ("t2", "weather")}


async def test_rename_and_delete_free_the_name(ports: ToolPorts, claims: InMemoryNameClaims) -> None:
    tool = await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    renamed = await handlers.update_tool(UpdateTool(T, tool.id, "u2", {"name": "forecast"}), ports)
    assert renamed.name == "forecast" and set(claims.claims) == {(T, "forecast")}
    recased = await handlers.update_tool(UpdateTool(T, tool.id, "u2", {"name": "Forecast"}), ports)
    assert recased.name == "Forecast" and set(claims.claims) == {(T, "forecast")}
    again = await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    await handlers.delete_tool(DeleteTool(T, again.id, "u3"), ports)
    assert set(claims.claims) == {(T, "forecast")}
    with pytest.raises(NotFound):
        await handlers.get_tool(ports, T, again.id)
    await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)


async def test_a_failed_record_releases_the_claim(
    ports: ToolPorts, fake: InMemoryTools, claims: InMemoryNameClaims
) -> None:
    fake.fail_next_record = ApiError(409, "conflict", "simulated concurrent write")
    with pytest.raises(ApiError):
        await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    assert claims.claims == {}
    tool = await handlers.create_tool(CreateTool(T, "u1", {**HTTP, "name": "a"}), ports)
    fake.fail_next_record = ApiError(409, "conflict", "simulated concurrent write")
    with pytest.raises(ApiError):
        await handlers.update_tool(UpdateTool(T, tool.id, "u1", {"name": "b"}), ports)
    assert set(claims.claims) == {(T, "a")}


async def test_claims_left_by_a_crash_are_taken_over_after_the_lease(
    ports: ToolPorts, claims: InMemoryNameClaims, clock: Clock
) -> None:
    # a create that claimed the name and died before recording
    orphan = NameClaim("weather", "tol_dead", "c1", clock.now)
    claims.claims[(T, "weather")] = orphan
    with pytest.raises(ToolNameTaken):
        await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    clock.now += handlers.CLAIM_LEASE + timedelta(seconds=1)
    tool = await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    assert claims.claims[(T, "weather")].tool_id == tool.id

    # a rename that recorded but died before freeing the old name
    renamed = await handlers.update_tool(UpdateTool(T, tool.id, "u1", {"name": "forecast"}), ports)
    claims.claims[(T, "weather")] = NameClaim("weather", renamed.id, "c2", clock.now)
    with pytest.raises(ToolNameTaken):
        await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    clock.now += handlers.CLAIM_LEASE + timedelta(seconds=1)
    await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)


async def test_a_claim_of_a_deleted_tool_is_free_at_once(
    ports: ToolPorts, claims: InMemoryNameClaims, clock: Clock
) -> None:
    tool = await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    await handlers.delete_tool(DeleteTool(T, tool.id, "u1"), ports)
    claims.claims[(T, "weather")] = NameClaim(
        "weather", tool.id, "c3", clock.now
    )  # delete died before release
    await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)


async def test_updates_merge_validate_and_switch_kind(ports: ToolPorts, fake: InMemoryTools) -> None:
    tool = await handlers.create_tool(CreateTool(T, "u1", {**HTTP, "description": "d"}), ports)
    same = await handlers.update_tool(
        UpdateTool(T, tool.id, "u2", {"timeout_ms": None, "tags": ["w"]}), ports
    )
    assert same.version == tool.version, "nothing changed, nothing recorded"
    cleared = await handlers.update_tool(UpdateTool(T, tool.id, "u2", {"description": None}), ports)
    assert cleared.description is None
    with pytest.raises(InvalidTool) as caught:
        await handlers.update_tool(UpdateTool(T, tool.id, "u2", {"headers": {"X-Api-Key": "plain"}}), ports)
    assert caught.value.details[0]["loc"] == ["body", "headers", "X-Api-Key"]

    switched = await handlers.update_tool(
        UpdateTool(
            T,
            tool.id,
            "u2",
            {
                "kind": "builtin",
                "builtin": "http_get_allowlisted",
                "parameters": BUILTINS["http_get_allowlisted"]["parameters"],
            },
        ),
        ports,
    )
    assert (switched.method, switched.url_template, switched.headers, switched.builtin) == (
        None,
        None,
        {},
        "http_get_allowlisted",
    )
    event = fake.streams[f"tool:{T}:{tool.id}"][-1].payload
    assert event["changed"] == ["kind", "parameters", "method", "url_template", "headers", "builtin"]
    with pytest.raises(InvalidTool):
        await handlers.update_tool(
            UpdateTool(T, tool.id, "u2", {"url_template": "https://api.example.com/"}), ports
        )
    with pytest.raises(PreconditionFailed):
        await handlers.update_tool(
            UpdateTool(T, tool.id, "u2", {"timeout_ms": 5}, Precondition(frozenset({1}))), ports
        )


async def test_lists_filter_by_status_tag_and_kind(ports: ToolPorts) -> None:
    http = await handlers.create_tool(CreateTool(T, "u1", HTTP), ports)
    calc = await handlers.create_tool(
        CreateTool(
            T, "u1", {"name": "calc", "kind": "builtin", "builtin": "calculator", "status": "inactive"}
        ),
        ports,
    )
    assert [t.id for t in (await handlers.list_tools(ports, T, ToolFilter(kind="builtin")))[0]] == [calc.id]
    assert [t.id for t in (await handlers.list_tools(ports, T, ToolFilter(tag="w")))[0]] == [http.id]
    assert [t.id for t in (await handlers.list_tools(ports, T, ToolFilter(status="inactive")))[0]] == [
        calc.id
    ]
    page, cursor = await handlers.list_tools(ports, T, ToolFilter(limit=1))
    assert [t.id for t in page] == [http.id] and cursor
    assert [t.id for t in (await handlers.list_tools(ports, T, ToolFilter(limit=1, cursor=cursor)))[0]] == [
        calc.id
    ]


async def test_absurdly_deep_schemas_are_refused_not_crashed(ports: ToolPorts) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(InvalidTool) as caught:
        await handlers.create_tool(CreateTool(T, "u1", {**CALC_DEF, "parameters": schema}), ports)
    assert "too_deep" in [p["code"] for p in caught.value.details]


CALC_DEF: dict[str, Any] = {"name": "calc", "kind": "builtin", "builtin": "calculator"}
