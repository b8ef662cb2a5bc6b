"""Templates over the run context, conditions, the flow graph walk rules, tool host allowlists and
the env secret resolver."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from run_executor.adapters.secrets import TenantEnvSecretResolver, env_name
from run_executor.engine.conditions import ConditionError, evaluate_condition
from run_executor.engine.graph import FlowError, FlowPlan
from run_executor.engine.template import (
    MissingPath,
    TemplateError,
    lookup,
    parse_path,
    render_text,
    render_value,
)
from run_executor.engine.tools import ToolError, ToolRunner, ToolSpec, host_allowed

pytestmark = pytest.mark.unit

CONTEXT: dict[str, Any] = {
    "inputs": {"question": "why?", "n": 3, "tags": ["a", "b"]},
    "draft": {"text": "echo: hi", "usage": {"tokens_in": 2}},
    "search": {"items": [{"title": "first"}, {"title": "second"}]},
    "last": None,
}


def test_paths() -> None:
    assert parse_path("search.items[1].title") == ["search", "items", 1, "title"]
    assert lookup(CONTEXT, "search.items[1].title") == "second"
    assert lookup(CONTEXT, "search.items.0.title") == "first"
    assert lookup(CONTEXT, "question") == "why?"  # falls back to the inputs
    assert lookup(CONTEXT, "inputs.tags") == ["a", "b"]
    for bad in ("", "1abc", "a..b", "a[x]", "a b"):
        with pytest.raises(TemplateError):
            parse_path(bad)
    with pytest.raises(MissingPath):
        lookup(CONTEXT, "draft.nope")
    with pytest.raises(MissingPath):
        lookup(CONTEXT, "search.items[5]")


def test_render_text_and_values() -> None:
    assert render_text("Q: {{ question }} ({{inputs.n}})", CONTEXT) == "Q: why? (3)"
    assert render_text("{{ draft.usage }} {{ last }}!", CONTEXT) == '{"tokens_in":2} !'
    assert render_text(r"literal \{{ x }} and {single}", CONTEXT) == "literal {{ x }} and {single}"
    assert render_value({"items": "{{ search.items }}", "t": "n={{ n }}"}, CONTEXT) == {
        "items": CONTEXT["search"]["items"],
        "t": "n=3",
    }
    # substituted values are not scanned again
    assert render_text("{{ x }}", {"inputs": {"x": "{{ question }}"}}) == "{{ question }}"
    with pytest.raises(TemplateError):
        render_text("{{ missing }}", CONTEXT)
    with pytest.raises(TemplateError):
        render_text("{{ a | upper }}", CONTEXT)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"path": "draft.text", "op": "contains", "value": "hi"}, True),
        ({"path": "inputs.tags", "op": "contains", "value": "b"}, True),
        ({"path": "draft.usage", "op": "contains", "value": "tokens_in"}, True),
        ({"path": "inputs.n", "op": "equals", "value": 3}, True),
        ({"path": "inputs.n", "op": "equals", "value": 3.0}, True),
        ({"path": "inputs.n", "op": "equals", "value": "3"}, False),
        ({"path": "inputs.n", "op": "not_equals", "value": 4}, True),
        ({"path": "inputs.n", "op": "gt", "value": 2}, True),
        ({"path": "inputs.n", "op": "lt", "value": "2.5"}, False),
        ({"path": "inputs.n", "op": "gte", "value": "{{ inputs.n }}"}, True),
        ({"path": "draft.text", "op": "regex", "value": "^echo: \\w+$"}, True),
        ({"path": "nope", "op": "exists"}, False),
        ({"path": "nope", "op": "gt", "value": 1}, False),
        ({"path": "last", "op": "empty"}, True),
        (
            {
                "all": [
                    {"path": "inputs.n", "op": "gt", "value": 1},
                    {"path": "draft.text", "op": "contains", "value": "x"},
                ]
            },
            False,
        ),
        (
            {
                "any": [
                    {"path": "inputs.n", "op": "gt", "value": 1},
                    {"path": "draft.text", "op": "contains", "value": "x"},
                ]
            },
            True,
        ),
        ({"not": {"path": "inputs.n", "op": "equals", "value": 3}}, False),
    ],
)
def test_conditions(condition: dict[str, Any], expected: bool) -> None:
    assert evaluate_condition(condition, CONTEXT) is expected


@pytest.mark.parametrize(
    "condition",
    [
        {"op": "equals"},
        {"path": "inputs.n", "op": "like"},
        {"path": "draft.text", "op": "regex", "value": "("},
        {"path": "draft.text", "op": "regex", "value": "a" * 501},
        {"path": "inputs.tags", "op": "gt", "value": 1},
        {"all": []},
    ],
)
def test_invalid_conditions(condition: dict[str, Any]) -> None:
    with pytest.raises(ConditionError):
        evaluate_condition(condition, CONTEXT)


def test_graph_start_nodes_and_branches() -> None:
    plan = FlowPlan.from_graph(
        {
            "nodes": [
                {"id": "c", "type": "condition"},
                {"id": "in", "type": "input"},
                {"id": "x", "type": "output"},
            ],
            "edges": [
                {"source": "in", "target": "c"},
                {"source": "c", "target": "x", "condition": "TRUE"},
                {"source": "c", "target": "in", "condition": "false"},
                {"source": "c", "target": "x"},
            ],
        }
    )
    assert plan.starts == ("in",)
    assert plan.successors("c", True) == ["x", "x"] and plan.successors("c", False) == ["in", "x"]
    roots = FlowPlan.from_graph({"nodes": [{"id": "a", "type": "llm"}, {"id": "b", "type": "llm"}]})
    assert roots.starts == ("a", "b")
    cycle = FlowPlan.from_graph(
        {
            "nodes": [{"id": "a", "type": "llm"}, {"id": "b", "type": "llm"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
        }
    )
    assert cycle.starts == ("a",)
    for bad in (
        {"nodes": []},
        {"nodes": [{"id": "a", "type": "loop"}]},
        {"nodes": [{"id": "a", "type": "llm"}, {"id": "a", "type": "llm"}]},
        {"nodes": [{"id": "a", "type": "input"}, {"id": "b", "type": "input"}]},
        {"nodes": [{"id": "a", "type": "llm"}], "edges": [{"source": "a", "target": "z"}]},
    ):
        with pytest.raises(FlowError):
            FlowPlan.from_graph(bad)


def test_host_allowlist() -> None:
    assert host_allowed("api.example.com", ["api.example.com"])
    assert host_allowed("API.example.com.", ["api.example.com"])
    assert host_allowed("eu.api.example.com", ["*.example.com"])
    assert not host_allowed("example.com", ["*.example.com"])
    assert not host_allowed("evilexample.com", ["*.example.com"])
    assert not host_allowed("127.0.0.1", ["*.0.0.1", "localhost"])
    assert host_allowed("127.0.0.1", ["127.0.0.1"])
    assert not host_allowed("anything.com", [])


async def test_http_tools_check_the_allowlist_before_connecting_and_resolve_secret_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "echo": request.url.params.get("q")})

    resolver = TenantEnvSecretResolver(
        {"AILAB_SECRET_ACME_API_TOKEN": "tok-acme-1234", "AILAB_SECRET_API_TOKEN": "shared"}
    )
    runner = ToolRunner(resolver, transport=httpx.MockTransport(handler))
    tool = ToolSpec(
        name="search",
        kind="http",
        method="GET",
        url_template="https://api.example.com/search?q={q}",
        headers={"Authorization": {"secret_ref": "api-token"}, "Accept": "application/json"},
        allowed_hosts=["api.example.com"],
    )
    result = await runner.call("acme", tool, {"q": "a b&c"})
    assert result == {"status": 200, "body": {"ok": True, "echo": "a b&c"}, "truncated": False}
    assert seen[0].headers["authorization"] == "tok-acme-1234" and seen[0].url.query == b"q=a%20b%26c"
    assert (await runner.call("other", tool, {"q": "x"}))["status"] == 200
    assert seen[1].headers["authorization"] == "shared"

    outside = ToolSpec(**{**tool.__dict__, "url_template": "https://evil.example.net/x?q={q}"})
    with pytest.raises(ToolError) as refused:
        await runner.call("acme", outside, {"q": "x"})
    assert refused.value.code == "tool_host_not_allowed" and len(seen) == 2
    get_any = ToolSpec.for_builtin("http_get_allowlisted")
    with pytest.raises(ToolError) as refused:
        await runner.call("acme", get_any, {"url": "http://169.254.169.254/latest/meta-data"})
    assert refused.value.code == "tool_host_not_allowed" and len(seen) == 2
    no_secret = ToolSpec(**{**tool.__dict__, "headers": {"X-Key": {"secret_ref": "missing"}}})
    with pytest.raises(ToolError) as missing:
        await runner.call("acme", no_secret, {"q": "x"})
    assert missing.value.code == "tool_secret_missing" and "missing" in missing.value.message
    with pytest.raises(ToolError) as no_arg:
        await runner.call("acme", tool, {})
    assert no_arg.value.code == "tool_invalid_arguments"
    await runner.aclose()


async def test_http_tool_errors_never_echo_secrets() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": "bad key " + request.headers["x-key"]})

    runner = ToolRunner(
        TenantEnvSecretResolver({"AILAB_SECRET_K": "secret-value-42"}), transport=httpx.MockTransport(handler)
    )
    tool = ToolSpec(
        name="t",
        kind="http",
        method="POST",
        url_template="https://h.example/x",
        headers={"X-Key": {"secret_ref": "k"}},
        allowed_hosts=["h.example"],
    )
    with pytest.raises(ToolError) as failed:
        await runner.call("acme", tool, {"a": 1})
    assert failed.value.code == "tool_http_error" and failed.value.details["status"] == 500
    assert "secret-value-42" not in str(failed.value.details) and "[redacted]" in failed.value.details["body"]
    await runner.aclose()


async def test_builtins_json_extract_and_current_time() -> None:
    runner = ToolRunner(TenantEnvSecretResolver({}))
    extract = ToolSpec.for_builtin("json_extract")
    assert await runner.call(
        "t", extract, {"json": '{"items": [{"name": "x"}]}', "path": "items[0].name"}
    ) == {"value": "x"}
    with pytest.raises(ToolError) as missing:
        await runner.call("t", extract, {"json": {"a": 1}, "path": "b"})
    assert missing.value.code == "json_path_not_found"
    now = await runner.call("t", ToolSpec.for_builtin("current_time"), {"timezone": "Europe/Paris"})
    assert now["timezone"] == "Europe/Paris" and now["iso"][-6:] in ("+01:00", "+02:00")
    with pytest.raises(ToolError):
        await runner.call("t", ToolSpec.for_builtin("current_time"), {"timezone": "Mars/Olympus"})
    await runner.aclose()


async def test_env_secret_resolver_names_and_order() -> None:
    assert env_name("acme-eu", "openai") == "AILAB_SECRET_ACME_EU_OPENAI"
    assert env_name("weather.key") == "AILAB_SECRET_WEATHER_KEY"
    resolver = TenantEnvSecretResolver(
        {"AILAB_SECRET_ACME_EU_OPENAI": "tenant", "AILAB_SECRET_OPENAI": "shared"}
    )
    assert await resolver.resolve("acme-eu", "openai") == "tenant"
    assert await resolver.resolve("other", "openai") == "shared"
    assert await resolver.resolve(None, "openai") == "shared"
    with pytest.raises(KeyError) as missing:
        await resolver.resolve("acme-eu", "anthropic")
    assert "sk-mine" not in str(missing.value) and "shared" not in str(missing.value)
