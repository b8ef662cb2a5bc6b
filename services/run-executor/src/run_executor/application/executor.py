"""The run lifecycle in this process: one asyncio task per accepted run, the only writer of its
run stream after `runs.RunQueued`.

    admit (plan limit, queue)  ->  RunQueued (API)  ->  task: wait for a slot  ->  RunStarted
    ->  execute_target(...)  ->  compute usage  ->  RunSucceeded | RunFailed | RunCancelled | RunTimedOut

Cancellation is a signal: the API triggers the run's `Interrupt` and waits for the task, which
stops its provider calls (keeping the tokens they reported) and records `RunCancelled` itself. The
API records a cancellation only when no task of this process owns the run any more.

Crash honesty: every run is claimed by this process's instance id (`run_claims`) before it is
queued, and the instance heartbeats (`executor_instances`). At start-up and then periodically, runs
still queued/running whose owner has no fresh heartbeat are failed with `executor_restarted`, with
the totals their metered usage adds up to. On shutdown, runs in flight are stopped and failed with
`executor_shutdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from ailab_contracts.events.runs import (
    RunCancelled,
    RunErrorInfo,
    RunFailed,
    RunSucceeded,
    RunTimedOut,
    RunTotals,
)

from ..domain.errors import InvalidTransition, RunsError
from ..domain.model import (
    EXECUTOR_SHUTDOWN,
    Run,
    decide_cancel,
    decide_fail,
    decide_orphaned,
    decide_start,
    decide_succeed,
    decide_time_out,
    fold,
)
from ..domain.values import storable_output, storable_preview
from ..engine.engine import (
    CANCELLED,
    SHUTDOWN,
    EngineDeps,
    ExecutionResult,
    FlowTarget,
    Interrupt,
    Limits,
    ProviderCall,
    RunScope,
    execute_target,
)
from ..engine.spans import Span
from .ports import (
    EventRecorder,
    ExecutorLeases,
    MeteredTotals,
    PlanLookup,
    RunLogs,
    RunSpans,
    RunViews,
    StreamConflict,
)
from .progress import FINAL_EVENT, ProgressHub
from .scheduler import TenantScheduler, Ticket
from .usage import call_usage_events, compute_usage_event, usage_stream

log = logging.getLogger("run_executor.executor")


class ExecutorStopping(RunsError):
    status = 503
    code = "executor_stopping"


@dataclass(frozen=True)
class ExecutorSettings:
    max_tool_rounds: int = 5
    heartbeat_interval_s: float = 5.0
    lease_ttl_s: float = 20.0
    sweep_interval_s: float = 10.0
    shutdown_grace_s: float = 15.0
    cancel_wait_s: float = 15.0
    usage_write_attempts: int = 3


@dataclass
class ExecutorPorts:
    recorder: EventRecorder
    runs: RunViews
    logs: RunLogs
    spans: RunSpans
    leases: ExecutorLeases
    metered: MeteredTotals
    plans: PlanLookup


@dataclass
class RunTask:
    """A run this process owns, from admission to its terminal event."""

    run_id: str
    tenant_id: str
    ticket: Ticket
    interrupt: Interrupt = field(default_factory=Interrupt)
    run: Run | None = None
    target: FlowTarget | None = None
    version: int = 0
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    log_seq: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


class RunExecutor:
    def __init__(
        self,
        ports: ExecutorPorts,
        deps: EngineDeps,
        scheduler: TenantScheduler,
        hub: ProgressHub,
        settings: ExecutorSettings | None = None,
        *,
        instance_id: str | None = None,
        provider_kind: Callable[[str], str] = lambda name: name,
    ) -> None:
        self.ports = ports
        self.deps = deps
        self.scheduler = scheduler
        self.hub = hub
        self.settings = settings or ExecutorSettings()
        self.instance_id = instance_id or f"exe_{uuid.uuid4().hex[:16]}"
        self._provider_kind = provider_kind
        self._tasks: dict[str, RunTask] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    # --- process lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Heartbeat, fail the runs of dead executors once, then keep doing both in the background."""
        await self.ports.leases.heartbeat(self.instance_id, _now())
        try:
            await self.sweep_orphans()
        except Exception:  # noqa: BLE001 - the periodic sweep retries
            log.exception("orphan sweep failed at start-up")
        self._loops = [
            asyncio.create_task(
                self._every(self.settings.heartbeat_interval_s, self._heartbeat), name="heartbeat"
            ),
            asyncio.create_task(
                self._every(self.settings.sweep_interval_s, self.sweep_orphans), name="sweep"
            ),
        ]
        log.info("run executor started", extra={"fields": {"instance_id": self.instance_id}})

    async def stop(self) -> None:
        """Stop every run in flight (they end `failed`/`executor_shutdown`), then the loops."""
        self._stopping = True
        for rt in list(self._tasks.values()):
            rt.interrupt.trigger(SHUTDOWN, message="the executor is shutting down")
        pending = [rt.done.wait() for rt in self._tasks.values()]
        if pending:
            await asyncio.wait(
                [asyncio.ensure_future(p) for p in pending], timeout=self.settings.shutdown_grace_s
            )
        for loop in self._loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
        self._loops = []
        if not self._tasks:
            with contextlib.suppress(Exception):
                await self.ports.leases.retire(self.instance_id)

    async def _every(self, interval_s: float, action: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await action()
            except Exception:  # noqa: BLE001
                log.exception("background executor job failed", extra={"fields": {"job": action.__name__}})

    async def _heartbeat(self) -> None:
        await self.ports.leases.heartbeat(self.instance_id, _now())

    async def sweep_orphans(self) -> int:
        """Fail runs left queued/running by executor processes that are gone; returns how many."""
        cutoff = _now() - timedelta(seconds=self.settings.lease_ttl_s)
        failed = 0
        for run in await self.ports.runs.active():
            if run.id in self._tasks:
                continue
            owner = await self.ports.leases.owner(run.id)
            if owner == self.instance_id:
                continue
            if owner is not None and await self.ports.leases.alive(owner, cutoff):
                continue
            if owner is None and run.created_at > cutoff:
                continue  # being accepted by a process right now
            totals = await self.ports.metered.totals(run.tenant_id, run.id)
            try:
                events = decide_orphaned(run, totals, _now())
                await self.ports.recorder.record(run.stream_id, run.version, run.tenant_id, events)
            except (StreamConflict, InvalidTransition):
                continue
            failed += 1
            log.warning(
                "run of a stopped executor failed as executor_restarted",
                extra={"fields": {"run_id": run.id, "tenant_id": run.tenant_id, "owner": owner}},
            )
        return failed

    # --- admission and launch ----------------------------------------------------------------------

    async def admit(self, tenant_id: str, run_id: str, *, streamed: bool = False) -> RunTask:
        """Reserve a slot or a queue place (TooManyRuns when full) and claim the run for this process."""
        if self._stopping:
            raise ExecutorStopping("the executor is shutting down; retry on another instance")
        plan = await self.ports.plans.plan(tenant_id)
        ticket = self.scheduler.admit(tenant_id, plan, run_id)
        rt = RunTask(run_id=run_id, tenant_id=tenant_id, ticket=ticket)
        self._tasks[run_id] = rt
        try:
            await self.ports.leases.claim(run_id, tenant_id, self.instance_id)
        except BaseException:
            self.abort(rt)
            raise
        if streamed:
            self.hub.open(run_id)
        return rt

    def abort(self, rt: RunTask) -> None:
        """The run was not queued after all (its RunQueued could not be recorded)."""
        rt.ticket.release()
        self._tasks.pop(rt.run_id, None)
        rt.done.set()

    def launch(self, rt: RunTask, run: Run, target: FlowTarget) -> None:
        """Start the run's task (after its RunQueued is recorded). Synchronous: nothing can slip in."""
        rt.run, rt.target, rt.version = run, target, run.version
        self.hub.publish(run.id, "run.queued", run)
        rt.task = asyncio.create_task(self._execute(rt), name=f"run {run.id}")

    def owns(self, run_id: str) -> bool:
        return run_id in self._tasks

    async def cancel(self, tenant_id: str, run_id: str, actor: str, reason: str | None) -> bool:
        """Signal the run's task and wait for it to finish; False when no task here owns the run."""
        rt = self._tasks.get(run_id)
        if rt is None or rt.tenant_id != tenant_id:
            return False
        rt.interrupt.trigger(CANCELLED, actor=actor, message=reason or f"cancelled by {actor}")
        waiter = asyncio.ensure_future(rt.done.wait())
        try:
            await asyncio.wait({waiter}, timeout=self.settings.cancel_wait_s)
        finally:
            waiter.cancel()
        return True

    # --- one run -----------------------------------------------------------------------------------

    async def _append(self, rt: RunTask, events: Sequence[BaseModel]) -> None:
        assert rt.run is not None
        if any(_is_terminal(e) for e in events):
            # Logs and spans are written behind; a finished run must have them readable.
            await self.ports.logs.flush()
            await self.ports.spans.flush()
        first = rt.version + 1
        rt.version = await self.ports.recorder.record(rt.run.stream_id, rt.version, rt.tenant_id, events)
        rt.run = fold(rt.run, rt.tenant_id, first, list(events))

    async def _execute(self, rt: RunTask) -> None:
        assert rt.run is not None and rt.target is not None
        started: float | None = None
        try:
            granted = await rt.ticket.wait_turn(rt.interrupt.event)
            if not granted or rt.interrupt.is_set:
                await self._end_unstarted(rt)
                return
            await self._append(rt, decide_start(rt.run, _now()))
            started = time.monotonic()
            self.hub.publish(rt.run_id, "run.started", rt.run)
            run = rt.run
            scope = RunScope(
                tenant_id=run.tenant_id,
                user_id=run.created_by,
                run_id=run.id,
                trace_id=run.trace_id,
                agent_id=run.agent_id,
                agent_version=run.agent_version,
                project_id=run.project_id,
                request_id=run.request_id,
            )
            result = await execute_target(
                rt.target,
                run.inputs,
                scope=scope,
                deps=self.deps,
                observer=_RunObserver(self, rt, scope),
                limits=Limits(
                    max_steps=run.max_steps,
                    timeout_s=run.timeout_s,
                    max_tool_rounds=self.settings.max_tool_rounds,
                ),
                interrupt=rt.interrupt,
            )
            seconds = Decimal(int((time.monotonic() - started) * 1000)) / 1000
            await self.record_usage(
                scope, "compute", [compute_usage_event(scope, seconds, _now(), result.status)]
            )
            await self._append(rt, self._terminal(rt.run, result))
        except Exception as exc:  # noqa: BLE001 - never leave a run without its end
            log.exception("run task failed", extra={"fields": {"run_id": rt.run_id}})
            await self._fail_safely(rt, "internal_error", f"the executor failed: {type(exc).__name__}")
        finally:
            rt.ticket.release()
            if started is not None:
                self.scheduler.record_duration(rt.tenant_id, time.monotonic() - started)
            self._tasks.pop(rt.run_id, None)
            self.hub.publish(rt.run_id, FINAL_EVENT, rt.run)
            rt.done.set()

    def _terminal(self, run: Run, result: ExecutionResult) -> list[BaseModel]:
        finished_at = _now()
        if result.status == "succeeded":
            return decide_succeed(run, storable_output(result.output), result.totals, finished_at)
        error = result.error
        assert error is not None
        info = RunErrorInfo(code=error.code[:100], message=error.message[:4000], node_id=error.node_id)
        if result.status == "cancelled":
            actor = result.interrupted_by or "system"
            return decide_cancel(run, actor, result.interrupt_message, result.totals, finished_at)
        if result.status == "timed_out":
            return decide_time_out(run, info, result.totals, finished_at)
        return decide_fail(run, info, result.totals, finished_at)

    async def _end_unstarted(self, rt: RunTask) -> None:
        assert rt.run is not None
        if rt.interrupt.reason == SHUTDOWN:
            info = RunErrorInfo(
                code=EXECUTOR_SHUTDOWN,
                message="the executor shut down before the run started; start it again",
            )
            await self._append(rt, decide_fail(rt.run, info, RunTotals(), _now()))
            return
        actor = rt.interrupt.actor or "system"
        await self._append(rt, decide_cancel(rt.run, actor, rt.interrupt.message, RunTotals(), _now()))
        await _RunObserver(self, rt, None).log("warning", "run cancelled while queued", data={"by": actor})

    async def _fail_safely(self, rt: RunTask, code: str, message: str) -> None:
        if rt.run is None or rt.run.finished:
            return
        try:
            totals = await self.ports.metered.totals(rt.tenant_id, rt.run_id)
            await self._append(
                rt, decide_fail(rt.run, RunErrorInfo(code=code, message=message), totals, _now())
            )
        except Exception:  # noqa: BLE001 - the orphan sweep of the next executor will fail it
            log.exception("could not record the failure of a run", extra={"fields": {"run_id": rt.run_id}})

    async def record_usage(self, scope: RunScope, part: int | str, events: Sequence[BaseModel]) -> None:
        """One commit on `usage:{tenant}:{run}:{part}`; retried, and a conflict means already recorded."""
        stream = usage_stream(scope.tenant_id, scope.run_id, part)
        for attempt in range(1, self.settings.usage_write_attempts + 1):
            try:
                await self.ports.recorder.record(stream, 0, scope.tenant_id, events)
                return
            except StreamConflict:
                return
            except Exception:
                if attempt == self.settings.usage_write_attempts:
                    log.error(
                        "usage could not be recorded",
                        extra={"fields": {"run_id": scope.run_id, "stream": stream, "events": len(events)}},
                    )
                    raise
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))

    def provider_kind(self, name: str) -> str:
        return self._provider_kind(name)


def _is_terminal(event: BaseModel) -> bool:
    return isinstance(event, RunSucceeded | RunFailed | RunCancelled | RunTimedOut)


class _RunObserver:
    """Where the engine's reports of one run go: logs and spans to their insert-only collections,
    provider calls to usage events, progress to the live stream."""

    def __init__(self, executor: RunExecutor, rt: RunTask, scope: RunScope | None) -> None:
        self._executor = executor
        self._rt = rt
        self._scope = scope

    async def log(self, level: str, message: str, *, node_id: str | None = None, data: Any = None) -> None:
        self._rt.log_seq += 1
        seq = self._rt.log_seq
        await self._executor.ports.logs.append(
            {
                "_id": f"{self._rt.run_id}:{seq:08d}",
                "tenant_id": self._rt.tenant_id,
                "run_id": self._rt.run_id,
                "seq": seq,
                "ts": _now(),
                "level": level,
                "node_id": node_id,
                "message": message[:4000],
                "data": storable_preview(dict(data)) if data else None,
            }
        )

    async def span(self, span: Span) -> None:
        await self._executor.ports.spans.insert(self._rt.tenant_id, self._rt.run_id, span)

    async def provider_call(self, call: ProviderCall) -> None:
        assert self._scope is not None
        events = call_usage_events(self._scope, call, _now(), self._executor.provider_kind)
        if events:
            await self._executor.record_usage(self._scope, call.index, events)

    async def progress(self, event: str, data: Any) -> None:
        self._executor.hub.publish(self._rt.run_id, event, dict(data))
