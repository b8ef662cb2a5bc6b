"""The experiment executor's `TargetRunner` over the flow engine: an agent version (from the
executor's registry views) or a prompt version runs like an agent run, and every provider call it
makes is metered as usage, exactly as for runs started through the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ailab_runtime.ids import new_id

from ..application.executor import RunExecutor
from ..application.usage import call_usage_events
from ..engine.engine import (
    EngineDeps,
    FlowTarget,
    Interrupt,
    Limits,
    ProviderCall,
    RunScope,
    Span,
    execute_target,
    prompt_target,
)
from ..engine.spans import new_trace_id
from ..experiments.ports import TargetError, TargetResult
from .registry_views import RegistryViews


class _CallCollector:
    """Observer keeping the provider calls (for metering); logs, spans and progress of experiment
    examples are summarised in the `runs.ExperimentExampleScored` events instead."""

    def __init__(self) -> None:
        self.calls: list[ProviderCall] = []

    async def log(
        self, level: str, message: str, *, node_id: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        return None

    async def span(self, span: Span) -> None:
        return None

    async def provider_call(self, call: ProviderCall) -> None:
        self.calls.append(call)

    async def progress(self, event: str, data: Mapping[str, Any]) -> None:
        return None


class EngineTargetRunner:
    def __init__(
        self, deps: EngineDeps, views: RegistryViews, executor: RunExecutor, limits: Limits | None = None
    ) -> None:
        self._deps = deps
        self._views = views
        self._executor = executor
        self._limits = limits or Limits()

    async def run(
        self,
        tenant_id: str,
        target: Mapping[str, Any],
        inputs: Mapping[str, Any],
        parameters: Mapping[str, Any],
        cancel: asyncio.Event,
    ) -> TargetResult:
        flow = await self._flow(tenant_id, target, parameters)
        if isinstance(flow, TargetError):
            return TargetResult(error=flow)
        run_id = new_id("run")
        scope = RunScope(
            tenant_id=tenant_id,
            user_id="experiment",
            run_id=run_id,
            trace_id=new_trace_id(),
            agent_id=target.get("agent_id"),
            agent_version=target.get("version") if target.get("type") == "agent_version" else None,
        )
        collector = _CallCollector()
        started = time.perf_counter()
        result = await execute_target(
            flow,
            inputs,
            scope=scope,
            deps=self._deps,
            observer=collector,
            limits=self._limits,
            interrupt=Interrupt(cancel),
        )
        latency_ms = (time.perf_counter() - started) * 1000
        now = datetime.now(UTC)
        for call in collector.calls:  # spent tokens are metered whatever the outcome
            events = call_usage_events(scope, call, now)
            if events:
                await self._executor.record_usage(scope, f"c{call.index}", events)
        totals = result.totals
        cost = None if totals.unpriced_calls else Decimal(str(totals.cost_usd))
        error = TargetError(result.error.code, result.error.message) if result.error else None
        if error is None and result.status != "succeeded":
            error = TargetError(result.status, f"the target ended {result.status}")
        return TargetResult(
            output=result.output,
            run_id=run_id,
            latency_ms=latency_ms,
            tokens_in=totals.tokens_in,
            tokens_out=totals.tokens_out,
            cost_usd=cost,
            error=error,
        )

    async def _flow(
        self, tenant_id: str, target: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> FlowTarget | TargetError:
        if target.get("type") == "agent_version":
            ref = await self._views.version(tenant_id, str(target["agent_id"]), int(target["version"]))
            if ref is None:
                return TargetError(
                    "target_not_found",
                    f"agent version {target['agent_id']} v{target['version']} is not known to the executor",
                )
            return FlowTarget(flow_graph=ref.flow_graph, config={**ref.config, **parameters})
        if target.get("type") == "prompt_version":
            llm = {
                k: v for k, v in parameters.items() if k in ("provider", "model", "temperature", "max_tokens")
            }
            return prompt_target(str(target["prompt_id"]), target.get("version"), **llm)
        return TargetError("invalid_target", f"unknown target type {target.get('type')!r}")
