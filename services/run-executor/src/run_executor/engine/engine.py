"""The flow engine: executes an agent version's flow graph for one run (or one experiment example).

`execute_target(...)` is the single entry point. It walks the graph (see `graph.py`), runs each node,
calls providers through the provider registry and tools through the tool runner, and reports
everything it does to an `ExecutionObserver`: log lines, finished spans (each node, provider call
and tool call, and the root span last), every provider call with its usage and cost (the caller
meters it), and progress events (node started/finished, text deltas) for live streams. It never
writes anything itself, so runs and experiments can record results their own way.

Stopping: an `Interrupt` (cancelled by a user, the run's wall-clock deadline, executor shutdown)
stops provider streams at once through `stream_until`, which keeps the tokens the provider had
reported; the engine then ends with `cancelled`, `timed_out` or `failed` (`executor_shutdown`).

Node types (config keys):
- `input`: output = the run inputs (`required`: names that must be present).
- `llm`: `provider` (default `local`), `model`, `temperature`, `max_tokens`, `top_p`, `stop`,
  `secret_ref`, `stream` (default true), `metadata` (passed to the provider request); the prompt is
  `prompt_id` + `prompt_version` (number or label; default latest) with `variables`, or `messages`
  (`[{role, content}]`), or `prompt` (+ `system`), all `{{ path }}` templates; without any, the
  previous node's output is the user message. `tools`: tool names offered for tool calling (at most
  `max_tool_rounds`, default 5, model/tool round trips). Output: `{text, tool_calls, finish_reason,
  provider, model, usage: {tokens_in, tokens_out}}`.
- `tool`: `tool` (name of a registry tool, or a built-in), `arguments` (templated JSON; default the
  previous output when it is an object). Output: the tool's result.
- `condition`: see `conditions.py`; output `{"result": bool}`; follows `true`/`false` edges.
- `transform` / `output`: `template` (text), `value` (templated JSON) or `path`; default the previous
  output. The last `output` node executed gives the run's output (else the last node's output).
Defaults for llm nodes may come from the agent version's config (`provider`, `model`,
`temperature`, `max_tokens`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from ailab_contracts.events.runs import RunTotals

from ..domain.values import storable_preview
from ..pricing import CostEstimate, PriceTable, default_price_table, estimate_cost
from ..providers import (
    ErrorCode,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamEnd,
    TextDelta,
    TokenUsage,
    UsageUpdate,
    complete_until,
    stream_until,
)
from .conditions import ConditionError, evaluate_condition
from .graph import FlowError, FlowPlan, Node
from .spans import Span, SpanRecorder
from .template import TemplateError, as_text, lookup, placeholders, render_text, render_value
from .tools import BUILTIN_NAMES, ToolError, ToolRunner, ToolSpec

log = logging.getLogger("run_executor.engine")

T = TypeVar("T")

DEFAULT_PROVIDER = "local"
DEFAULT_MODEL = "local-echo"
STEP_LIMIT_EXCEEDED = "step_limit_exceeded"
RUN_TIMEOUT = "run_timeout"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
SHUTDOWN = "shutdown"
_HARD_TIMEOUT_GRACE_S = 5.0


# --- ports and values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptVersion:
    prompt_id: str
    version: int
    template: str | None = None
    messages: Sequence[Mapping[str, Any]] | None = None
    variables: Sequence[Mapping[str, Any]] = ()
    model_params: Mapping[str, Any] = field(default_factory=dict)


class RegistryLookup(Protocol):
    """What the engine reads from the registry's data (the executor's own views of it)."""

    async def prompt_version(
        self, tenant_id: str, prompt_id: str, ref: int | str | None
    ) -> PromptVersion | None: ...

    async def tool(self, tenant_id: str, name: str) -> ToolSpec | None: ...


class ProviderPort(Protocol):
    def stream(self, req: ProviderRequest) -> Any: ...

    async def complete(self, req: ProviderRequest) -> ProviderResponse: ...


class ToolPort(Protocol):
    async def call(self, tenant_id: str, tool: ToolSpec, arguments: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True)
class ProviderCall:
    """One provider call of a run, as metered: `usage` None means the provider reported none."""

    index: int
    node_id: str
    provider: str
    model: str
    raw_model: str | None
    usage: TokenUsage | None
    status: str  # ok | error | cancelled | timeout
    status_code: int | None
    error_type: str | None
    error_message: str | None
    latency_ms: int
    attempts: int
    finish_reason: str | None
    cost: CostEstimate | None
    started_at: datetime
    span_id: str

    @property
    def tokens_in(self) -> int:
        return self.usage.total_input_tokens if self.usage is not None else 0

    @property
    def tokens_out(self) -> int:
        return self.usage.total_output_tokens if self.usage is not None else 0


class ExecutionObserver(Protocol):
    async def log(
        self, level: str, message: str, *, node_id: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None: ...

    async def span(self, span: Span) -> None: ...

    async def provider_call(self, call: ProviderCall) -> None: ...

    async def progress(self, event: str, data: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class RunScope:
    """Who and what a run is, for attribution in spans, usage and provider requests."""

    tenant_id: str
    user_id: str
    run_id: str
    trace_id: str
    agent_id: str | None = None
    agent_version: int | None = None
    project_id: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Limits:
    max_steps: int = 100
    timeout_s: float = 120.0
    max_tool_rounds: int = 5


@dataclass(frozen=True)
class FlowTarget:
    """What to execute: a flow graph and the agent version's config (defaults for llm nodes)."""

    flow_graph: Mapping[str, Any]
    config: Mapping[str, Any] = field(default_factory=dict)


def prompt_target(prompt_id: str, prompt_version: int | str | None = None, **llm_config: Any) -> FlowTarget:
    """A target running one prompt version (for experiments on prompts): input -> llm -> output."""
    return FlowTarget(
        flow_graph={
            "nodes": [
                {"id": "input", "type": "input"},
                {
                    "id": "llm",
                    "type": "llm",
                    "config": {"prompt_id": prompt_id, "prompt_version": prompt_version, **llm_config},
                },
                {"id": "output", "type": "output", "config": {"path": "llm.text"}},
            ],
            "edges": [{"source": "input", "target": "llm"}, {"source": "llm", "target": "output"}],
        }
    )


class Interrupt:
    """Why a run must stop now. The first trigger wins: `cancelled` (by `actor`), `timed_out` (the
    wall-clock deadline) or `shutdown` (the executor is stopping)."""

    def __init__(self, event: asyncio.Event | None = None) -> None:
        # an external event (e.g. an experiment's cancel event) set directly reads as `cancelled`
        self.event = event or asyncio.Event()
        self.reason: str | None = None
        self.actor: str | None = None
        self.message: str | None = None

    def trigger(self, reason: str, actor: str | None = None, message: str | None = None) -> bool:
        if self.reason is not None or self.event.is_set():  # set directly from outside: a cancellation
            return False
        self.reason, self.actor, self.message = reason, actor, message
        self.event.set()
        return True

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


@dataclass
class EngineDeps:
    providers: ProviderPort
    registry: RegistryLookup
    tools: ToolPort | ToolRunner
    price_table: Callable[[str], PriceTable] = field(default=lambda tenant_id: default_price_table())


@dataclass(frozen=True)
class ExecutionError:
    code: str
    message: str
    node_id: str | None = None


@dataclass(frozen=True)
class ExecutionResult:
    status: str  # succeeded | failed | cancelled | timed_out
    output: Any
    error: ExecutionError | None
    totals: RunTotals
    trace_id: str
    root_span_id: str
    calls: tuple[ProviderCall, ...] = ()
    interrupted_by: str | None = None  # the actor of a cancellation
    interrupt_message: str | None = None


class NodeFailure(Exception):
    def __init__(
        self, code: str, message: str, node_id: str | None = None, span_status: str = "error"
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.node_id = node_id
        self.span_status = span_status


class Interrupted(Exception):
    """Raised inside the walk when the Interrupt is set."""


# --- the run ---------------------------------------------------------------------------------------


async def execute_target(
    target: FlowTarget,
    inputs: Mapping[str, Any],
    *,
    scope: RunScope,
    deps: EngineDeps,
    observer: ExecutionObserver,
    limits: Limits | None = None,
    interrupt: Interrupt | None = None,
) -> ExecutionResult:
    """Execute `target` with `inputs` until it ends, fails, times out or is interrupted."""
    return await _Execution(target, dict(inputs), scope, deps, observer, limits or Limits(), interrupt).run()


class _Execution:
    def __init__(
        self,
        target: FlowTarget,
        inputs: dict[str, Any],
        scope: RunScope,
        deps: EngineDeps,
        observer: ExecutionObserver,
        limits: Limits,
        interrupt: Interrupt | None,
    ) -> None:
        self.target = target
        self.inputs = inputs
        self.scope = scope
        self.deps = deps
        self.observer = observer
        self.limits = limits
        self.interrupt = interrupt or Interrupt()
        base = {
            "tenant_id": scope.tenant_id,
            "user_id": scope.user_id,
            "run_id": scope.run_id,
            "agent_id": scope.agent_id,
            "agent_version": scope.agent_version,
            "project_id": scope.project_id,
        }
        self.spans = SpanRecorder(
            scope.trace_id, {k: v for k, v in base.items() if v is not None}, self._emit
        )
        self.calls: list[ProviderCall] = []
        self.tool_calls = 0
        self.steps = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = Decimal(0)
        self.unpriced = 0
        self._started = time.monotonic()

    # -- observer helpers (logs, spans and progress are best effort; usage is not) -----------------

    async def _emit(self, span: Span) -> None:
        try:
            await self.observer.span(span)
        except Exception:  # noqa: BLE001
            log.exception("could not record a span", extra={"fields": {"run_id": self.scope.run_id}})

    async def _log(self, level: str, message: str, node_id: str | None = None, **data: Any) -> None:
        try:
            await self.observer.log(level, message, node_id=node_id, data=data or None)
        except Exception:  # noqa: BLE001
            log.exception("could not record a log line", extra={"fields": {"run_id": self.scope.run_id}})

    async def _progress(self, event: str, **data: Any) -> None:
        try:
            await self.observer.progress(event, data)
        except Exception:  # noqa: BLE001
            log.exception("could not publish progress", extra={"fields": {"run_id": self.scope.run_id}})

    # -- the whole run -------------------------------------------------------------------------------

    async def run(self) -> ExecutionResult:
        root = self.spans.start("agent.run", None, input=self.inputs, max_steps=self.limits.max_steps)
        deadline = asyncio.ensure_future(self._deadline())
        output: Any = None
        error: ExecutionError | None = None
        status = "succeeded"
        try:
            try:
                async with asyncio.timeout(self.limits.timeout_s + _HARD_TIMEOUT_GRACE_S):
                    plan = FlowPlan.from_graph(self.target.flow_graph)
                    await self._log("info", "run started", steps_limit=self.limits.max_steps)
                    output = await self._walk(plan, root)
            except TimeoutError:
                # the deadline interrupt was not honoured in time somewhere: stop the hard way
                self.interrupt.trigger(TIMED_OUT)
                raise Interrupted() from None
        except FlowError as exc:
            status, error = "failed", ExecutionError(exc.code, str(exc))
        except NodeFailure as exc:
            status, error = "failed", ExecutionError(exc.code, exc.message, exc.node_id)
        except Interrupted:
            status, error = self._interrupted_outcome()
        finally:
            deadline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deadline
        totals = self.totals()
        root.set(
            steps=self.steps,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=totals.cost_usd,
            provider_calls=len(self.calls),
            tool_calls=self.tool_calls,
            status=status,
        )
        if error is None:
            await self._log("info", "run succeeded", steps=self.steps)
            await self.spans.end(root, output=output)
        else:
            level = "warning" if status == "cancelled" else "error"
            await self._log(level, f"run {status}: {error.message}", error.node_id, code=error.code)
            await self.spans.end(
                root,
                status="timeout" if status == "timed_out" else "error",
                error_type=error.code,
                error_message=error.message,
            )
        return ExecutionResult(
            status=status,
            output=output if status == "succeeded" else None,
            error=error,
            totals=totals,
            trace_id=self.scope.trace_id,
            root_span_id=root.span_id,
            calls=tuple(self.calls),
            interrupted_by=self.interrupt.actor,
            interrupt_message=self.interrupt.message,
        )

    def _interrupted_outcome(self) -> tuple[str, ExecutionError]:
        reason = self.interrupt.reason
        if reason == TIMED_OUT:
            return "timed_out", ExecutionError(
                RUN_TIMEOUT, f"the run exceeded its wall-clock limit of {self.limits.timeout_s:g}s"
            )
        if reason == SHUTDOWN:
            return "failed", ExecutionError(
                "executor_shutdown", "the executor shut down before the run finished; start it again"
            )
        return "cancelled", ExecutionError(CANCELLED, self.interrupt.message or "the run was cancelled")

    async def _deadline(self) -> None:
        await asyncio.sleep(self.limits.timeout_s)
        self.interrupt.trigger(TIMED_OUT)

    def totals(self) -> RunTotals:
        return RunTotals(
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=format(self.cost.normalize(), "f") if self.cost else "0",
            unpriced_calls=self.unpriced,
            provider_calls=len(self.calls),
            tool_calls=self.tool_calls,
            steps=self.steps,
            latency_ms=round((time.monotonic() - self._started) * 1000, 3),
        )

    def _check(self) -> None:
        if self.interrupt.is_set:
            raise Interrupted()

    async def _until(self, call: Awaitable[T]) -> T:
        """Await `call` unless the interrupt comes first (then cancel it and raise Interrupted)."""
        task = asyncio.ensure_future(call)
        waiter = asyncio.ensure_future(self.interrupt.event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task.cancelled():
            raise Interrupted()
        return task.result()

    # -- walking the graph ---------------------------------------------------------------------------

    async def _walk(self, plan: FlowPlan, root: Span) -> Any:
        context: dict[str, Any] = {"inputs": self.inputs, "last": None}
        frontier: deque[str] = deque(plan.starts)
        output: Any = None
        has_output = False
        while frontier:
            self._check()
            node = plan.nodes[frontier.popleft()]
            if self.steps >= self.limits.max_steps:
                raise NodeFailure(
                    STEP_LIMIT_EXCEEDED,
                    f"the run reached its step limit of {self.limits.max_steps} node executions "
                    f"(a cycle without an exit?) before node {node.id!r}",
                    node.id,
                )
            self.steps += 1
            result, branch = await self._run_node(node, context, root)
            context[node.id] = result
            context["last"] = result
            if node.type == "output":
                output, has_output = result, True
            frontier.extend(plan.successors(node.id, branch))
        return output if has_output else context["last"]

    async def _run_node(self, node: Node, context: dict[str, Any], root: Span) -> tuple[Any, bool | None]:
        step = self.steps
        span = self.spans.start(f"node.{node.type}", root, node_id=node.id, node_type=node.type, step=step)
        await self._progress("node.started", node_id=node.id, type=node.type, step=step)
        await self._log("info", f"node {node.id} ({node.type}) started", node.id, step=step)
        started = time.monotonic()
        try:
            result, branch = await self._dispatch(node, context, span)
        except Interrupted:
            reason = self.interrupt.reason or CANCELLED
            timeout = reason == TIMED_OUT
            await self.spans.end(
                span,
                status="timeout" if timeout else "error",
                error_type=RUN_TIMEOUT if timeout else reason,
                error_message=f"node interrupted: run {reason}",
            )
            await self._progress(
                "node.finished", node_id=node.id, type=node.type, step=step, status="interrupted"
            )
            raise
        except NodeFailure as exc:
            exc.node_id = exc.node_id or node.id
            await self._fail_node(node, span, step, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - any other bug becomes a failed node, not a lost run
            log.exception("node crashed", extra={"fields": {"run_id": self.scope.run_id, "node_id": node.id}})
            failure = NodeFailure("internal_error", f"{type(exc).__name__} in node {node.id!r}", node.id)
            await self._fail_node(node, span, step, failure)
            raise failure from exc
        duration = round((time.monotonic() - started) * 1000, 3)
        if branch is not None:
            span.set(branch=branch)
        await self.spans.end(span, output=result)
        await self._log("info", f"node {node.id} finished", node.id, duration_ms=duration)
        await self._progress(
            "node.finished",
            node_id=node.id,
            type=node.type,
            step=step,
            status="ok",
            duration_ms=duration,
            output=_preview(result),
        )
        return result, branch

    async def _fail_node(self, node: Node, span: Span, step: int, exc: NodeFailure) -> None:
        await self.spans.end(span, status=exc.span_status, error_type=exc.code, error_message=exc.message)
        await self._log("error", f"node {node.id} failed: {exc.message}", node.id, code=exc.code)
        await self._progress(
            "node.finished", node_id=node.id, type=node.type, step=step, status="error", error=exc.code
        )

    async def _dispatch(self, node: Node, context: dict[str, Any], span: Span) -> tuple[Any, bool | None]:
        config = node.config
        try:
            if node.type == "input":
                missing = [n for n in config.get("required") or () if n not in self.inputs]
                if missing:
                    raise NodeFailure("missing_input", f"the run needs inputs {missing}")
                span.input = None
                return self.inputs, None
            if node.type == "llm":
                return await self._llm(node, context, span), None
            if node.type == "tool":
                return await self._tool_node(node, context, span), None
            if node.type == "condition":
                span.input = storable_preview(dict(config))
                result = evaluate_condition(config, context)
                return {"result": result}, result
            # transform and output
            return self._transform(config, context, span), None
        except TemplateError as exc:
            raise NodeFailure(exc.code, str(exc)) from None
        except ConditionError as exc:
            raise NodeFailure(exc.code, str(exc)) from None
        except ToolError as exc:
            raise NodeFailure(exc.code, exc.message) from None

    def _transform(self, config: Mapping[str, Any], context: dict[str, Any], span: Span) -> Any:
        span.input = storable_preview(dict(config))
        if "template" in config:
            if not isinstance(config["template"], str):
                raise NodeFailure("invalid_node_config", "`template` must be a string")
            return render_text(config["template"], context)
        if "value" in config:
            return render_value(config["value"], context)
        if "path" in config:
            if not isinstance(config["path"], str):
                raise NodeFailure("invalid_node_config", "`path` must be a string")
            return lookup(context, config["path"])
        return context.get("last")

    # -- tools ------------------------------------------------------------------------------------------

    async def _resolve_tool(self, name: Any) -> ToolSpec:
        if not isinstance(name, str) or not name:
            raise NodeFailure("invalid_node_config", "a tool is named by a non-empty string")
        tool = await self.deps.registry.tool(self.scope.tenant_id, name)
        if tool is None and name in BUILTIN_NAMES:
            tool = ToolSpec.for_builtin(name)
        if tool is None:
            raise NodeFailure("tool_not_found", f"no tool named {name!r} in this tenant")
        return tool

    async def _tool_node(self, node: Node, context: dict[str, Any], span: Span) -> Any:
        tool = await self._resolve_tool(node.config.get("tool"))
        if "arguments" in node.config:
            arguments = render_value(node.config["arguments"], context)
        else:
            last = context.get("last")
            arguments = dict(last) if isinstance(last, Mapping) else {}
        span.input = storable_preview({"tool": tool.name, "arguments": arguments})
        span.set(tool=tool.name, tool_kind=tool.kind)
        return await self._call_tool(tool, arguments, span, node.id)

    async def _call_tool(self, tool: ToolSpec, arguments: Any, parent: Span, node_id: str) -> Any:
        self.tool_calls += 1
        span = self.spans.start(
            "tool.call",
            parent,
            kind="client" if tool.kind == "http" else "internal",
            input=arguments,
            node_id=node_id,
            tool=tool.name,
            tool_kind=tool.kind,
            tool_id=tool.tool_id,
        )
        try:
            result = await self._until(self.deps.tools.call(self.scope.tenant_id, tool, arguments))
        except Interrupted:
            await self.spans.end(span, status="error", error_type=self.interrupt.reason or CANCELLED)
            raise
        except ToolError as exc:
            await self.spans.end(
                span,
                status="timeout" if exc.code == "tool_timeout" else "error",
                error_type=exc.code,
                error_message=exc.message,
            )
            await self._log("error", f"tool {tool.name} failed: {exc.message}", node_id, code=exc.code)
            raise
        await self.spans.end(span, output=result)
        await self._log("info", f"tool {tool.name} returned", node_id)
        return result

    # -- llm ----------------------------------------------------------------------------------------------

    def _llm_settings(self, config: Mapping[str, Any], model_params: Mapping[str, Any]) -> dict[str, Any]:
        defaults = self.target.config
        merged: dict[str, Any] = {}
        for key in ("provider", "model", "temperature", "max_tokens", "top_p", "stop"):
            for source in (config, model_params, defaults):
                if source.get(key) is not None:
                    merged[key] = source[key]
                    break
        merged.setdefault("provider", DEFAULT_PROVIDER)
        merged.setdefault("model", DEFAULT_MODEL if merged["provider"] == DEFAULT_PROVIDER else None)
        if not merged.get("model"):
            raise NodeFailure("invalid_node_config", "the llm node needs a `model`")
        return merged

    async def _messages(
        self, config: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
        if config.get("prompt_id"):
            return await self._prompt_messages(config, context)
        if "messages" in config:
            raw = config["messages"]
            if not isinstance(raw, list) or not raw:
                raise NodeFailure("invalid_node_config", "`messages` must be a non-empty list")
            messages = []
            for m in raw:
                if not isinstance(m, Mapping) or m.get("role") not in ("system", "user", "assistant"):
                    raise NodeFailure(
                        "invalid_node_config", "each message needs a role system|user|assistant"
                    )
                messages.append(
                    {"role": m["role"], "content": render_text(str(m.get("content") or ""), context)}
                )
            return messages, {}
        messages = []
        if isinstance(config.get("system"), str):
            messages.append({"role": "system", "content": render_text(config["system"], context)})
        if isinstance(config.get("prompt"), str):
            messages.append({"role": "user", "content": render_text(config["prompt"], context)})
        else:
            last = context.get("last")
            messages.append({"role": "user", "content": as_text(last if last is not None else self.inputs)})
        return messages, {}

    async def _prompt_messages(
        self, config: Mapping[str, Any], context: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
        ref = config.get("prompt_version")
        if isinstance(ref, str) and ref.isdigit():
            ref = int(ref)
        prompt = await self.deps.registry.prompt_version(self.scope.tenant_id, str(config["prompt_id"]), ref)
        if prompt is None:
            raise NodeFailure(
                "prompt_not_found",
                f"prompt {config['prompt_id']!r} version {ref if ref is not None else 'latest'!r} "
                "is not known to the executor",
            )
        texts = (
            [prompt.template]
            if prompt.template is not None
            else [m.get("content") or "" for m in prompt.messages or ()]
        )
        names = list(
            dict.fromkeys(
                [str(v.get("name")) for v in prompt.variables]
                + [p for t in texts for p in placeholders(str(t))]
            )
        )
        declared = {str(v.get("name")): v for v in prompt.variables}
        supplied = config.get("variables") or {}
        if not isinstance(supplied, Mapping):
            raise NodeFailure("invalid_node_config", "`variables` must be an object")
        values: dict[str, Any] = {}
        for name in names:
            spec = declared.get(name, {})
            if name in supplied:
                values[name] = render_value(supplied[name], context)
                continue
            found = _lookup_or_missing(context, name)
            if found is not _MISSING:
                values[name] = found
            elif spec.get("default") is not None:
                values[name] = spec["default"]
            elif spec and not spec.get("required", True):
                values[name] = ""
            else:
                raise NodeFailure(
                    "prompt_variable_missing",
                    f"prompt {prompt.prompt_id} v{prompt.version} needs variable {name!r}: pass it in the "
                    "node's `variables` or as a run input",
                )
        scope = {"inputs": {}, **values}
        if prompt.template is not None:
            messages = [{"role": "user", "content": render_text(prompt.template, scope)}]
        else:
            messages = [
                {"role": str(m.get("role")), "content": render_text(str(m.get("content") or ""), scope)}
                for m in prompt.messages or ()
            ]
        return messages, prompt.model_params

    async def _llm(self, node: Node, context: dict[str, Any], span: Span) -> dict[str, Any]:
        config = node.config
        messages, model_params = await self._messages(config, context)
        settings = self._llm_settings(config, model_params)
        tool_names = config.get("tools") or []
        if not isinstance(tool_names, list):
            raise NodeFailure("invalid_node_config", "`tools` must be a list of tool names")
        tools = {t.name: t for t in [await self._resolve_tool(n) for n in tool_names]}
        rounds = config.get("max_tool_rounds", self.limits.max_tool_rounds)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise NodeFailure("invalid_node_config", "`max_tool_rounds` must be a non-negative integer")
        extra_metadata = config.get("metadata") or {}
        if not isinstance(extra_metadata, Mapping):
            raise NodeFailure("invalid_node_config", "`metadata` must be an object")
        span.set(provider=settings["provider"], model=settings["model"])
        span.input = storable_preview({"messages": messages, "tools": list(tools)})
        usage_in = usage_out = 0
        response: ProviderResponse | None = None
        for round_index in range(rounds + 1):
            request = ProviderRequest(
                provider=str(settings["provider"]),
                model=str(settings["model"]),
                messages=list(messages),
                tools=[t.provider_spec() for t in tools.values()] or None,
                tool_choice=config.get("tool_choice"),
                temperature=settings.get("temperature"),
                max_tokens=settings.get("max_tokens"),
                top_p=settings.get("top_p"),
                stop=settings.get("stop"),
                stream=bool(config.get("stream", True)),
                timeout_s=config.get("timeout_s"),
                tenant_id=self.scope.tenant_id,
                secret_ref=config.get("secret_ref"),
                metadata={
                    **extra_metadata,
                    "run_id": self.scope.run_id,
                    "user_id": self.scope.user_id,
                },
            )
            response = await self._call_provider(request, node.id, span)
            usage_in += response.usage.total_input_tokens
            usage_out += response.usage.total_output_tokens
            if not response.tool_calls or not tools:
                break
            if round_index == rounds:
                await self._log(
                    "warning", f"tool rounds exhausted ({rounds}); returning the last answer", node.id
                )
                break
            messages.append(
                {
                    "role": "assistant",
                    "content": response.text or None,
                    "tool_calls": [c.as_message_part() for c in response.tool_calls],
                }
            )
            for call in response.tool_calls:
                tool = tools.get(call.name)
                if tool is None:
                    content: Any = {
                        "error": {"code": "tool_not_offered", "message": f"no tool {call.name!r}"}
                    }
                else:
                    try:
                        content = await self._call_tool(tool, call.arguments, span, node.id)
                    except ToolError as exc:
                        content = {"error": {"code": exc.code, "message": exc.message}}
                messages.append({"role": "tool", "tool_call_id": call.id, "content": as_text(content)})
        assert response is not None
        span.set(tokens_in=usage_in, tokens_out=usage_out, finish_reason=response.finish_reason)
        return {
            "text": response.text,
            "tool_calls": [c.as_message_part() for c in response.tool_calls],
            "finish_reason": response.finish_reason,
            "provider": response.provider,
            "model": response.raw_model or response.model,
            "usage": {"tokens_in": usage_in, "tokens_out": usage_out},
        }

    async def _call_provider(self, request: ProviderRequest, node_id: str, parent: Span) -> ProviderResponse:
        index = len(self.calls) + 1
        span = self.spans.start(
            "llm.call",
            parent,
            kind="client",
            input={"messages": list(request.messages), "tools": [t.get("name") for t in request.tools or ()]},
            node_id=node_id,
            provider=request.provider,
            model=request.model,
            call_index=index,
            stream=request.stream,
        )
        started_at = datetime.now(UTC)
        started = time.monotonic()
        usage: TokenUsage | None = None
        response: ProviderResponse | None = None
        try:
            if request.stream:
                async for event in stream_until(
                    self.deps.providers.stream(request), self.interrupt.event, provider=request.provider
                ):
                    if isinstance(event, TextDelta):
                        await self._progress("text.delta", node_id=node_id, text=event.text)
                    elif isinstance(event, UsageUpdate):
                        usage = event.usage
                    elif isinstance(event, StreamEnd):
                        response = event.response
                if response is None:
                    raise ProviderError(
                        ErrorCode.BAD_RESPONSE,
                        "stream ended without a final event",
                        provider=request.provider,
                    )
            else:
                response = await complete_until(
                    self.deps.providers.complete(request), self.interrupt.event, provider=request.provider
                )
        except ProviderError as err:
            spent = err.usage_so_far or usage
            interrupted = err.code == ErrorCode.CANCELLED and self.interrupt.is_set
            status = (
                "cancelled"
                if err.code == ErrorCode.CANCELLED
                else ("timeout" if err.code == ErrorCode.TIMEOUT else "error")
            )
            if interrupted and self.interrupt.reason == TIMED_OUT:
                status = "timeout"
            await self._meter(
                index,
                node_id,
                request,
                None,
                spent,
                status,
                err.status,
                err.code.value,
                err.message,
                int((time.monotonic() - started) * 1000),
                1,
                None,
                started_at,
                span,
            )
            await self.spans.end(
                span,
                status="timeout" if status == "timeout" else "error",
                error_type=err.code.value if not interrupted else (self.interrupt.reason or CANCELLED),
                error_message=err.message,
            )
            if interrupted:
                raise Interrupted() from None
            await self._log(
                "error",
                f"provider call failed: {err.message}",
                node_id,
                code=err.code.value,
                status=err.status,
            )
            raise NodeFailure(err.code.value, err.message, node_id) from None
        usage_known = response.usage if response.usage_reported else None
        await self._meter(
            index,
            node_id,
            request,
            response,
            usage_known,
            "ok",
            200,
            None,
            None,
            response.latency_ms,
            response.attempts,
            response.finish_reason,
            started_at,
            span,
        )
        if response.time_to_first_token_ms is not None:
            span.event("first_token", time_to_first_token_ms=response.time_to_first_token_ms)
        await self.spans.end(
            span,
            output={"text": response.text, "tool_calls": [c.as_message_part() for c in response.tool_calls]},
        )
        return response

    async def _meter(
        self,
        index: int,
        node_id: str,
        request: ProviderRequest,
        response: ProviderResponse | None,
        usage: TokenUsage | None,
        status: str,
        status_code: int | None,
        error_type: str | None,
        error_message: str | None,
        latency_ms: int,
        attempts: int,
        finish_reason: str | None,
        started_at: datetime,
        span: Span,
    ) -> None:
        raw_model = response.raw_model if response is not None else None
        cost: CostEstimate | None = None
        if usage is not None:
            table = self.deps.price_table(self.scope.tenant_id)
            cost = estimate_cost(request.provider, raw_model or request.model, usage, table=table)
            if cost.total is None:
                self.unpriced += 1
                await self._log("warning", cost.warning or "cost unknown", node_id, model=request.model)
                log.warning(
                    "no price for a provider call; cost unknown",
                    extra={
                        "fields": {
                            "provider": request.provider,
                            "model": request.model,
                            "run_id": self.scope.run_id,
                            "tenant_id": self.scope.tenant_id,
                        }
                    },
                )
            else:
                self.cost += cost.total
        elif status == "ok":
            self.unpriced += 1
            await self._log("warning", "the provider reported no usage; tokens and cost unknown", node_id)
        call = ProviderCall(
            index=index,
            node_id=node_id,
            provider=request.provider,
            model=request.model,
            raw_model=raw_model,
            usage=usage,
            status=status,
            status_code=status_code,
            error_type=error_type,
            error_message=error_message,
            latency_ms=latency_ms,
            attempts=attempts,
            finish_reason=finish_reason,
            cost=cost,
            started_at=started_at,
            span_id=span.span_id,
        )
        self.calls.append(call)
        self.tokens_in += call.tokens_in
        self.tokens_out += call.tokens_out
        span.set(
            tokens_in=call.tokens_in,
            tokens_out=call.tokens_out,
            cost_usd=cost.total_usd if cost is not None else None,
            latency_ms=latency_ms,
            status_code=status_code,
        )
        try:
            await self.observer.provider_call(call)
        except Exception as exc:
            # spending tokens we cannot meter is worse than stopping: fail the node
            log.exception("could not record usage", extra={"fields": {"run_id": self.scope.run_id}})
            raise NodeFailure(
                "usage_recording_failed", f"usage could not be recorded: {type(exc).__name__}"
            ) from exc


_MISSING = object()


def _lookup_or_missing(context: Mapping[str, Any], name: str) -> Any:
    try:
        return lookup(context, name)
    except TemplateError:
        return _MISSING


def _preview(value: Any, limit: int = 2000) -> Any:
    text = as_text(value)
    return value if len(text) <= limit else text[:limit] + "…"
