"""Commands of the runs API: start, cancel and delete a run (one function each, ports injected)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ailab_contracts.events.runs import RunQueued, RunTotals, run_stream
from ailab_runtime.ids import new_id

from ..domain.errors import InvalidReference, InvalidTransition, InvalidValue, PreconditionFailed, RunNotFound
from ..domain.model import CANCELLED, Run, decide_cancel, decide_delete, fold
from ..domain.values import json_size, storage_problems
from ..engine.engine import FlowTarget
from ..engine.spans import new_trace_id
from .executor import RunExecutor
from .ports import AgentLookup, EventRecorder, RunLogs, RunSpans, RunViews, StreamConflict


@dataclass(frozen=True)
class RunLimits:
    default_timeout_s: float = 120.0
    max_timeout_s: float = 3600.0
    default_max_steps: int = 100
    max_steps: int = 1000
    max_inputs_bytes: int = 256 * 1024


@dataclass
class RunPorts:
    views: RunViews
    agents: AgentLookup
    recorder: EventRecorder
    executor: RunExecutor
    logs: RunLogs
    spans: RunSpans
    limits: RunLimits = field(default_factory=RunLimits)


@dataclass(frozen=True)
class StartRun:
    tenant_id: str
    actor: str
    agent_id: str
    version: int | None
    inputs: Mapping[str, Any]
    metadata: Mapping[str, Any]
    timeout_s: float | None
    streamed: bool
    request_id: str | None
    trace_id: str | None = None


@dataclass(frozen=True)
class Precondition:
    """`If-Match`: the versions the caller last saw (`any_version` for `*`)."""

    versions: frozenset[int] = frozenset()
    any_version: bool = False

    def check(self, run: Run) -> None:
        if not self.any_version and run.version not in self.versions:
            raise PreconditionFailed(
                f"run {run.id} is at version {run.version}", {"current_version": run.version}
            )


def _positive_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


async def start_run(cmd: StartRun, ports: RunPorts) -> Run:
    """Queue a run of an agent version and launch its task (which waits for a slot of the tenant)."""
    agent = await ports.agents.agent(cmd.tenant_id, cmd.agent_id)
    if agent is None or agent.deleted:
        raise InvalidReference(
            f"agent {cmd.agent_id} not found in this tenant",
            [{"loc": ["body", "agent_id"], "msg": "unknown agent", "type": "invalid_reference"}],
        )
    number = cmd.version or agent.latest_version
    if number is None:
        raise InvalidReference(
            f"agent {cmd.agent_id} has no published version yet",
            [{"loc": ["body", "agent_id"], "msg": "no published version", "type": "agent_has_no_version"}],
            code="agent_has_no_version",
        )
    version = await ports.agents.version(cmd.tenant_id, cmd.agent_id, number)
    if version is None:
        raise InvalidReference(
            f"agent {cmd.agent_id} has no version {number}",
            [{"loc": ["body", "version"], "msg": f"unknown version {number}", "type": "invalid_reference"}],
        )
    problems = storage_problems(dict(cmd.inputs), ["body", "inputs"]) + storage_problems(
        dict(cmd.metadata), ["body", "metadata"]
    )
    if problems:
        raise InvalidValue("inputs and metadata must be storable JSON objects", problems)
    size = json_size(dict(cmd.inputs)) + json_size(dict(cmd.metadata))
    if size > ports.limits.max_inputs_bytes:
        raise InvalidValue(
            f"inputs and metadata take {size} bytes; at most {ports.limits.max_inputs_bytes}",
            [{"loc": ["body", "inputs"], "msg": "too large", "type": "too_large"}],
            code="inputs_too_large",
        )
    limits = ports.limits
    timeout = cmd.timeout_s or _positive_number(version.config.get("timeout_s")) or limits.default_timeout_s
    timeout = min(timeout, limits.max_timeout_s)
    steps = version.config.get("max_steps")
    max_steps = steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None
    max_steps = min(max_steps or limits.default_max_steps, limits.max_steps)

    run_id = new_id("run")
    rt = await ports.executor.admit(cmd.tenant_id, run_id, streamed=cmd.streamed)
    event = RunQueued(
        run_id=run_id,
        agent_id=cmd.agent_id,
        agent_version=number,
        project_id=agent.project_id,
        inputs=dict(cmd.inputs),
        metadata=dict(cmd.metadata),
        timeout_s=timeout,
        max_steps=max_steps,
        streamed=cmd.streamed,
        trace_id=cmd.trace_id or new_trace_id(),
        request_id=cmd.request_id,
        created_by=cmd.actor,
        queued_at=datetime.now(UTC),
    )
    try:
        await ports.recorder.record(run_stream(cmd.tenant_id, run_id), 0, cmd.tenant_id, [event])
    except BaseException:
        ports.executor.abort(rt)
        raise
    run = fold(None, cmd.tenant_id, 1, [event])
    assert run is not None
    ports.executor.launch(rt, run, FlowTarget(flow_graph=version.flow_graph, config=version.config))
    return run


async def _existing(ports: RunPorts, tenant_id: str, run_id: str) -> Run:
    run = await ports.views.get(tenant_id, run_id)
    if run is None or run.deleted:
        raise RunNotFound(f"run {run_id} not found")
    return run


async def cancel_run(
    tenant_id: str,
    run_id: str,
    actor: str,
    reason: str | None,
    precondition: Precondition | None,
    ports: RunPorts,
) -> Run:
    """Cancel a queued or running run: signal its task (which records RunCancelled after stopping its
    provider calls); record the cancellation here only when no task of this process owns it."""
    run = await _existing(ports, tenant_id, run_id)
    if precondition is not None:
        precondition.check(run)
    if run.finished:
        decide_cancel(run, actor, reason, RunTotals(), datetime.now(UTC))  # raises run_already_finished
    executor = ports.executor
    if await executor.cancel(tenant_id, run_id, actor, reason):
        after = await _existing(ports, tenant_id, run_id)
        if after.finished and after.status != CANCELLED:
            decide_cancel(after, actor, reason, RunTotals(), datetime.now(UTC))  # it finished first: 409
        return after
    owner = await executor.ports.leases.owner(run_id)
    cutoff = datetime.now(UTC) - timedelta(seconds=executor.settings.lease_ttl_s)
    if owner not in (None, executor.instance_id) and await executor.ports.leases.alive(owner, cutoff):
        raise InvalidTransition(
            f"run {run_id} is executing on another executor instance; retry there",
            {"run_id": run_id, "owner": owner},
            code="run_on_other_executor",
        )
    totals = await executor.ports.metered.totals(tenant_id, run_id)
    events = decide_cancel(run, actor, reason, totals, datetime.now(UTC))
    try:
        await ports.recorder.record(run.stream_id, run.version, tenant_id, events)
    except StreamConflict:
        raise InvalidTransition(
            f"run {run_id} changed meanwhile; retry", {"run_id": run_id}, code="conflict"
        ) from None
    after_run = fold(run, tenant_id, run.version + 1, events)
    assert after_run is not None
    return after_run


async def delete_run(
    tenant_id: str, run_id: str, actor: str, precondition: Precondition | None, ports: RunPorts
) -> None:
    """Delete a finished run (409 otherwise): it and its logs and spans disappear from every read."""
    run = await _existing(ports, tenant_id, run_id)
    if precondition is not None:
        precondition.check(run)
    events = decide_delete(run, actor)
    try:
        await ports.recorder.record(run.stream_id, run.version, tenant_id, events)
    except StreamConflict:
        raise InvalidTransition(
            f"run {run_id} changed meanwhile; retry", {"run_id": run_id}, code="conflict"
        ) from None
    await ports.logs.delete_run(tenant_id, run_id)
    await ports.spans.delete_run(tenant_id, run_id)
