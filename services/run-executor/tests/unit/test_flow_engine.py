"""The flow engine on the in-process `local` provider: branching, transforms, outputs, the step
limit on a cycle, the wall-clock limit, cancellation keeping spent tokens, errors as spans, tool
calling, prompts from the registry views, and `prompt_target` for experiments."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from run_executor.engine.engine import (
    EngineDeps,
    FlowTarget,
    Interrupt,
    Limits,
    PromptVersion,
    RunScope,
    execute_target,
    prompt_target,
)
from run_executor.engine.spans import Span
from run_executor.engine.tools import ToolError, ToolSpec
from run_executor.providers import LocalProvider, ProviderRegistry

pytestmark = pytest.mark.unit

SCOPE = RunScope(tenant_id="acme", user_id="usr_1", run_id="run_1", trace_id="ab" * 16, agent_id="agt_1")


class Views:
    def __init__(self) -> None:
        self.prompts: dict[tuple[str, Any], PromptVersion] = {}
        self.tools: dict[str, ToolSpec] = {}

    async def prompt_version(
        self, tenant_id: str, prompt_id: str, ref: int | str | None
    ) -> PromptVersion | None:
        return self.prompts.get((prompt_id, ref))

    async def tool(self, tenant_id: str, name: str) -> ToolSpec | None:
        return self.tools.get(name)


class Tools:
    """Built-ins run for real; `slow` sleeps; `broken` fails."""

    def __init__(self) -> None:
        from run_executor.adapters.secrets import TenantEnvSecretResolver
        from run_executor.engine.tools import ToolRunner

        self.real = ToolRunner(TenantEnvSecretResolver({}))
        self.calls: list[tuple[str, Mapping[str, Any]]] = []

    async def call(self, tenant_id: str, tool: ToolSpec, arguments: Mapping[str, Any]) -> Any:
        self.calls.append((tool.name, arguments))
        if tool.name == "slow":
            await asyncio.sleep(30)
        if tool.name == "broken":
            raise ToolError("tool_http_error", "HTTP 500")
        return await self.real.call(tenant_id, tool, arguments)


class Recorder:
    def __init__(self) -> None:
        self.logs: list[tuple[str, str, str | None]] = []
        self.spans: list[Span] = []
        self.calls: list[Any] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def log(self, level: str, message: str, *, node_id: str | None = None, data: Any = None) -> None:
        self.logs.append((level, message, node_id))

    async def span(self, span: Span) -> None:
        self.spans.append(span)

    async def provider_call(self, call: Any) -> None:
        self.calls.append(call)

    async def progress(self, event: str, data: Any) -> None:
        self.events.append((event, dict(data)))

    def span_named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.operation_name == name]


async def run(
    graph: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    *,
    views: Views | None = None,
    limits: Limits | None = None,
    interrupt: Interrupt | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[Any, Recorder]:
    recorder = Recorder()
    deps = EngineDeps(providers=ProviderRegistry([LocalProvider()]), registry=views or Views(), tools=Tools())
    result = await execute_target(
        FlowTarget(graph, config or {}),
        inputs or {},
        scope=SCOPE,
        deps=deps,
        observer=recorder,
        limits=limits,
        interrupt=interrupt,
    )
    return result, recorder


def branching(value: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "in", "type": "input"},
            {
                "id": "check",
                "type": "condition",
                "config": {"path": "inputs.text", "op": "contains", "value": value},
            },
            {"id": "yes", "type": "transform", "config": {"template": "matched {{ text }}"}},
            {
                "id": "no",
                "type": "transform",
                "config": {"value": {"missing": "{{ inputs.text }}", "n": "{{ n }}"}},
            },
            {"id": "out", "type": "output"},
        ],
        "edges": [
            {"source": "in", "target": "check"},
            {"source": "check", "target": "yes", "condition": "true"},
            {"source": "check", "target": "no", "condition": "false"},
            {"source": "yes", "target": "out"},
            {"source": "no", "target": "out"},
        ],
    }


async def test_condition_branches_and_the_output_node_returns_the_previous_value() -> None:
    result, rec = await run(branching("refund"), {"text": "a refund please", "n": 3})
    assert result.status == "succeeded" and result.output == "matched a refund please"
    assert [s.attributes["node_id"] for s in rec.span_named("node.transform")] == ["yes"]
    result, _ = await run(branching("invoice"), {"text": "a refund please", "n": 3})
    assert result.output == {"missing": "a refund please", "n": 3}  # a whole placeholder keeps its type
    assert result.totals.steps == 4


async def test_without_output_node_the_last_node_gives_the_output() -> None:
    graph = {"nodes": [{"id": "t", "type": "transform", "config": {"path": "inputs.items[1].name"}}]}
    result, _ = await run(graph, {"items": [{"name": "a"}, {"name": "b"}]})
    assert result.output == "b"


async def test_llm_node_output_and_usage() -> None:
    graph = {
        "nodes": [
            {"id": "draft", "type": "llm", "config": {"system": "Be brief", "prompt": "Say {{ word }}"}},
            {"id": "out", "type": "output", "config": {"path": "draft"}},
        ],
        "edges": [{"source": "draft", "target": "out"}],
    }
    result, rec = await run(graph, {"word": "hi"})
    out = result.output
    assert out["text"] == "echo: Say hi" and out["provider"] == "local" and out["finish_reason"] == "stop"
    assert out["usage"] == {"tokens_in": 4, "tokens_out": 3}
    assert (result.totals.tokens_in, result.totals.tokens_out, result.totals.provider_calls) == (4, 3, 1)
    [call] = rec.calls
    assert call.status == "ok" and call.usage.total_input_tokens == 4 and call.cost.total == 0
    deltas = "".join(d["text"] for e, d in rec.events if e == "text.delta")
    assert deltas == "echo: Say hi"


async def test_a_cycle_without_exit_stops_at_the_step_limit() -> None:
    graph = {
        "nodes": [{"id": "a", "type": "transform"}, {"id": "b", "type": "transform"}],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
    }
    result, rec = await run(graph)
    assert result.status == "failed" and result.error.code == "step_limit_exceeded"
    assert result.totals.steps == 100 and len(rec.span_named("node.transform")) == 100
    result, _ = await run(graph, limits=Limits(max_steps=5))
    assert result.totals.steps == 5 and result.error.node_id == "b"  # a b a b a, then b is refused
    [root] = rec.span_named("agent.run")
    assert root.status == "error" and root.error == {
        "type": "step_limit_exceeded",
        "message": root.error["message"],
    }


async def test_the_wall_clock_limit_times_out_and_keeps_reported_tokens() -> None:
    graph = {
        "nodes": [
            {
                "id": "slow",
                "type": "llm",
                "config": {"prompt": "a b c d", "metadata": {"local_chunk_delay_s": 5}},
            }
        ]
    }
    loop = asyncio.get_running_loop()
    started = loop.time()
    result, rec = await run(graph, limits=Limits(timeout_s=0.3))
    assert loop.time() - started < 2
    assert result.status == "timed_out" and result.error.code == "run_timeout"
    assert result.totals.tokens_in == 4  # the prompt tokens the stream reported before the deadline
    [call] = rec.calls
    assert call.status == "timeout" and call.usage.input_tokens == 4
    assert rec.span_named("node.llm")[0].status == "timeout"
    assert rec.span_named("agent.run")[0].status == "timeout"


async def test_the_deadline_also_stops_a_slow_tool() -> None:
    graph = {"nodes": [{"id": "t", "type": "tool", "config": {"tool": "slow"}}]}
    views = Views()
    views.tools["slow"] = ToolSpec(name="slow", kind="builtin", builtin="calculator")
    result, rec = await run(graph, views=views, limits=Limits(timeout_s=0.2))
    assert result.status == "timed_out" and rec.span_named("tool.call")[0].status == "error"


async def test_cancellation_stops_the_provider_stream_and_keeps_spent_tokens() -> None:
    interrupt = Interrupt()
    graph = {
        "nodes": [
            {
                "id": "slow",
                "type": "llm",
                "config": {"prompt": "a b c", "metadata": {"local_chunk_delay_s": 5}},
            }
        ]
    }

    async def cancel_soon() -> None:
        await asyncio.sleep(0.2)
        interrupt.trigger("cancelled", actor="usr_2", message="enough")

    task = asyncio.create_task(cancel_soon())
    result, rec = await run(graph, interrupt=interrupt)
    await task
    assert result.status == "cancelled" and result.interrupted_by == "usr_2"
    assert result.interrupt_message == "enough" and result.totals.tokens_in == 3
    assert rec.calls[0].status == "cancelled" and rec.calls[0].error_type == "provider_cancelled"


async def test_shutdown_fails_the_run() -> None:
    interrupt = Interrupt()
    interrupt.trigger("shutdown")
    result, _ = await run({"nodes": [{"id": "t", "type": "transform"}]}, interrupt=interrupt)
    assert result.status == "failed" and result.error.code == "executor_shutdown"


async def test_errors_become_spans_and_logs() -> None:
    graph = {
        "nodes": [
            {"id": "ok", "type": "transform", "config": {"template": "fine"}},
            {"id": "bad", "type": "transform", "config": {"template": "{{ nowhere.to.be.found }}"}},
        ],
        "edges": [{"source": "ok", "target": "bad"}],
    }
    result, rec = await run(graph)
    assert (
        result.status == "failed" and result.error.code == "template_error" and result.error.node_id == "bad"
    )
    spans = {s.attributes["node_id"]: s for s in rec.span_named("node.transform")}
    assert spans["ok"].status == "ok" and spans["ok"].output == "fine"
    assert spans["bad"].status == "error" and spans["bad"].error["type"] == "template_error"
    assert "nowhere" in spans["bad"].error["message"]
    [root] = rec.span_named("agent.run")
    assert root.parent_span_id is None and all(s.parent_span_id == root.span_id for s in spans.values())
    assert {s.trace_id for s in rec.spans} == {SCOPE.trace_id}
    assert ("error", "node bad failed: " + spans["bad"].error["message"], "bad") in rec.logs
    assert ("node.finished", "error") in [(e, d.get("status")) for e, d in rec.events]


async def test_provider_errors_and_unknown_nodes_configs_fail_clearly() -> None:
    graph = {
        "nodes": [
            {"id": "l", "type": "llm", "config": {"metadata": {"local_error": "provider_rate_limited"}}}
        ]
    }
    result, rec = await run(graph)
    assert result.error.code == "provider_rate_limited" and rec.calls[0].status == "error"
    result, _ = await run(
        {"nodes": [{"id": "l", "type": "llm", "config": {"provider": "nope", "model": "m"}}]}
    )
    assert result.error.code == "provider_bad_request" and "unknown provider" in result.error.message
    result, _ = await run({"nodes": [{"id": "l", "type": "llm", "config": {"provider": "openai"}}]})
    assert result.error.code == "invalid_node_config"
    result, _ = await run({"nodes": []})
    assert result.error.code == "invalid_flow_graph"
    result, _ = await run({"nodes": [{"id": "x", "type": "tool", "config": {"tool": "unknown"}}]})
    assert result.error.code == "tool_not_found"
    result, _ = await run({"nodes": [{"id": "i", "type": "input", "config": {"required": ["q"]}}]})
    assert result.error.code == "missing_input"


async def test_model_tool_calling_runs_tools_and_returns_their_result_to_the_model() -> None:
    graph = {
        "nodes": [
            {
                "id": "ask",
                "type": "llm",
                "config": {"prompt": 'use calculator {"expression": "2 ** 10"}', "tools": ["calculator"]},
            }
        ]
    }
    result, rec = await run(graph)
    assert result.status == "succeeded"
    assert (
        result.output["text"].startswith("tool calculator returned: ")
        and '"result":1024' in result.output["text"]
    )
    assert result.totals.provider_calls == 2 and result.totals.tool_calls == 1
    [tool_span] = rec.span_named("tool.call")
    llm_node = rec.span_named("node.llm")[0]
    assert tool_span.parent_span_id == llm_node.span_id and tool_span.output["result"] == 1024


async def test_a_failing_tool_in_tool_calling_is_reported_to_the_model() -> None:
    views = Views()
    views.tools["broken"] = ToolSpec(name="broken", kind="builtin", builtin="calculator")
    graph = {
        "nodes": [{"id": "ask", "type": "llm", "config": {"prompt": "call broken", "tools": ["broken"]}}]
    }
    result, _ = await run(graph, views=views)
    assert result.status == "succeeded" and "tool_http_error" in result.output["text"]


async def test_prompts_from_the_registry_with_variables_defaults_and_model_params() -> None:
    views = Views()
    views.prompts[("pmt", 2)] = PromptVersion(
        prompt_id="pmt",
        version=2,
        messages=[
            {"role": "system", "content": "Tone {{ tone }}"},
            {"role": "user", "content": "Hi {{ name }}"},
        ],
        variables=[{"name": "name"}, {"name": "tone", "default": "warm"}],
        model_params={"model": "local-chat", "max_tokens": 2},
    )
    graph = {"nodes": [{"id": "p", "type": "llm", "config": {"prompt_id": "pmt", "prompt_version": "2"}}]}
    result, rec = await run(graph, {"name": "Ada"}, views=views)
    assert result.output["text"] == "echo: Hi"  # max_tokens 2 from the prompt's model params
    assert result.output["finish_reason"] == "length" and rec.calls[0].model == "local-chat"
    node = rec.span_named("node.llm")[0]
    assert node.input["messages"] == [
        {"role": "system", "content": "Tone warm"},
        {"role": "user", "content": "Hi Ada"},
    ]
    result, _ = await run(graph, {}, views=views)
    assert result.error.code == "prompt_variable_missing" and "name" in result.error.message


async def test_prompt_target_runs_one_prompt_version_for_experiments() -> None:
    views = Views()
    views.prompts[("pmt", None)] = PromptVersion(prompt_id="pmt", version=1, template="Q: {{ question }}")
    target = prompt_target("pmt")
    recorder = Recorder()
    deps = EngineDeps(providers=ProviderRegistry([LocalProvider()]), registry=views, tools=Tools())
    result = await execute_target(target, {"question": "why"}, scope=SCOPE, deps=deps, observer=recorder)
    assert result.status == "succeeded" and result.output == "echo: Q: why"


async def test_agent_config_supplies_llm_defaults() -> None:
    graph = {"nodes": [{"id": "l", "type": "llm", "config": {"prompt": "one two three"}}]}
    result, rec = await run(graph, config={"provider": "local", "model": "house-model", "max_tokens": 1})
    assert rec.calls[0].model == "house-model" and result.output["text"] == "echo:"


async def test_observer_failures_of_logs_and_spans_do_not_break_a_run_but_usage_failures_do() -> None:
    class Flaky(Recorder):
        async def log(self, *a: Any, **k: Any) -> None:
            raise RuntimeError("logs down")

        async def span(self, span: Span) -> None:
            raise RuntimeError("spans down")

    class NoUsage(Recorder):
        async def provider_call(self, call: Any) -> None:
            raise RuntimeError("usage down")

    deps = EngineDeps(providers=ProviderRegistry([LocalProvider()]), registry=Views(), tools=Tools())
    graph = {"nodes": [{"id": "l", "type": "llm", "config": {"prompt": "x"}}]}
    ok = await execute_target(FlowTarget(graph), {}, scope=SCOPE, deps=deps, observer=Flaky())
    assert ok.status == "succeeded"
    failed = await execute_target(FlowTarget(graph), {}, scope=SCOPE, deps=deps, observer=NoUsage())
    assert failed.status == "failed" and failed.error.code == "usage_recording_failed"


async def test_an_external_cancel_event_interrupts_as_a_cancellation() -> None:
    cancel = asyncio.Event()
    graph = {
        "nodes": [
            {"id": "slow", "type": "llm", "config": {"prompt": "a b", "metadata": {"local_chunk_delay_s": 5}}}
        ]
    }
    asyncio.get_running_loop().call_later(0.2, cancel.set)
    result, _ = await run(graph, interrupt=Interrupt(cancel))
    assert result.status == "cancelled" and result.totals.tokens_in == 2


async def test_every_span_can_be_stored_as_is() -> None:
    """Spans are stored best effort (a failed write must not fail a run), so nothing in them may be
    refused by the database: no `.` or `$` in keys, JSON values only."""
    from run_executor.domain.values import storage_problems

    graph = {
        "nodes": [
            {
                "id": "ask",
                "type": "llm",
                "config": {"prompt": 'calculator {"expression": "1+1"}', "tools": ["calculator"]},
            },
            {"id": "odd", "type": "transform", "config": {"value": {"a.b": "{{ ask.text }}", "$x": 1}}},
        ],
        "edges": [{"source": "ask", "target": "odd"}],
    }
    result, rec = await run(graph)
    assert result.status == "succeeded"
    assert {s.operation_name for s in rec.spans} == {
        "agent.run",
        "node.llm",
        "llm.call",
        "tool.call",
        "node.transform",
    }
    for span in rec.spans:
        doc = span.as_doc()
        for key in ("attributes", "tags", "input", "output", "error"):
            assert storage_problems(doc[key], [key]) == [], (span.operation_name, key, doc[key])
        for event in doc["events"]:
            assert storage_problems(event["attributes"], ["events"]) == []
    assert rec.span_named("llm.call")[0].tags == {"service_name": "run-executor", "span_kind": "client"}
    # an output with keys a database cannot keep is stored as its JSON text in the span
    assert rec.span_named("node.transform")[0].output["preview"].startswith('{"a.b"')
