"""The run aggregate: state folded from its events, and the rules deciding new events.

A run lives in the stream `run:{tenant}:{run_id}`. `evolve_run` folds each event into a `Run` (the
`runs` view persists exactly that fold); the `decide_*` functions check a command against the
current state and return the events to record, or raise; they never perform I/O.

    queued --start--> running --finish--> succeeded | failed | cancelled | timed_out
    queued --cancel / fail (executor restarted)--> cancelled | failed
    (finished) --delete--> deleted (hidden from every read)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ailab_contracts.events.runs import (
    TERMINAL_RUN_STATUSES,
    RunCancelled,
    RunDeleted,
    RunErrorInfo,
    RunFailed,
    RunQueued,
    RunStarted,
    RunSucceeded,
    RunTimedOut,
    RunTotals,
    run_stream,
)

from .errors import InvalidTransition, RunAlreadyFinished, RunNotFinished

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = "succeeded", "failed", "cancelled", "timed_out"
STATUSES: tuple[str, ...] = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT)
TERMINAL: frozenset[str] = TERMINAL_RUN_STATUSES
ACTIVE: frozenset[str] = frozenset({QUEUED, RUNNING})

# status -> statuses it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    TIMED_OUT: frozenset(),
}

EXECUTOR_RESTARTED = "executor_restarted"
EXECUTOR_SHUTDOWN = "executor_shutdown"

__all__ = ["run_stream"]


def ms(at: datetime) -> datetime:
    """MongoDB keeps milliseconds: truncating makes folded state equal to the stored view."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Run:
    id: str
    tenant_id: str
    agent_id: str
    agent_version: int
    project_id: str | None
    status: str
    inputs: dict[str, Any]
    metadata: dict[str, Any]
    timeout_s: float
    max_steps: int
    streamed: bool
    trace_id: str
    request_id: str | None
    created_by: str
    created_at: datetime
    version: int  # stream version this state reflects (the ETag, and the next expected version)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    totals: dict[str, Any] = field(default_factory=lambda: RunTotals().model_dump(mode="json"))
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    deleted: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def stream_id(self) -> str:
        return run_stream(self.tenant_id, self.id)


def evolve_run(state: Run | None, tenant_id: str, position: int, event: BaseModel) -> Run | None:
    """The run after `event` (at `position` in the run's stream); None when the event does not
    concern an existing run. Times come from the events themselves, so a rebuild is identical."""
    if isinstance(event, RunQueued):
        if state is not None:
            return state
        return Run(
            id=event.run_id,
            tenant_id=tenant_id,
            agent_id=event.agent_id,
            agent_version=event.agent_version,
            project_id=event.project_id,
            status=QUEUED,
            inputs=dict(event.inputs),
            metadata=dict(event.metadata),
            timeout_s=event.timeout_s,
            max_steps=event.max_steps,
            streamed=event.streamed,
            trace_id=event.trace_id,
            request_id=event.request_id,
            created_by=event.created_by,
            created_at=ms(event.queued_at),
            version=position,
        )
    if state is None:
        return None
    if isinstance(event, RunStarted):
        return replace(state, status=RUNNING, started_at=ms(event.started_at), version=position)
    if isinstance(event, RunSucceeded):
        return _finish(state, SUCCEEDED, event.totals, event.finished_at, position, output=event.output)
    if isinstance(event, RunFailed):
        return _finish(state, FAILED, event.totals, event.finished_at, position, error=event.error)
    if isinstance(event, RunTimedOut):
        return _finish(state, TIMED_OUT, event.totals, event.finished_at, position, error=event.error)
    if isinstance(event, RunCancelled):
        return replace(
            _finish(state, CANCELLED, event.totals, event.finished_at, position),
            cancelled_by=event.cancelled_by,
            cancel_reason=event.reason,
        )
    if isinstance(event, RunDeleted):
        return replace(state, deleted=True, version=position)
    return None


def _finish(
    state: Run,
    status: str,
    totals: RunTotals,
    finished_at: datetime,
    position: int,
    *,
    output: Any = None,
    error: RunErrorInfo | None = None,
) -> Run:
    return replace(
        state,
        status=status,
        totals=totals.model_dump(mode="json"),
        finished_at=ms(finished_at),
        output=output,
        error=error.model_dump(mode="json") if error is not None else None,
        version=position,
    )


# --- deciding -----------------------------------------------------------------------------------


def check_transition(run: Run, target: str) -> None:
    """Raise unless `run` may move to `target` (finished runs never move again)."""
    if target in TRANSITIONS[run.status]:
        return
    if run.finished:
        raise RunAlreadyFinished(
            f"run {run.id} already finished ({run.status})", {"run_id": run.id, "status": run.status}
        )
    raise InvalidTransition(
        f"run {run.id} cannot go from {run.status} to {target}",
        {"run_id": run.id, "status": run.status, "target": target},
    )


def decide_start(run: Run, started_at: datetime) -> list[BaseModel]:
    check_transition(run, RUNNING)
    return [RunStarted(run_id=run.id, started_at=started_at)]


def decide_cancel(
    run: Run, actor: str, reason: str | None, totals: RunTotals, finished_at: datetime
) -> list[BaseModel]:
    check_transition(run, CANCELLED)
    return [
        RunCancelled(run_id=run.id, cancelled_by=actor, reason=reason, totals=totals, finished_at=finished_at)
    ]


def decide_fail(run: Run, error: RunErrorInfo, totals: RunTotals, finished_at: datetime) -> list[BaseModel]:
    check_transition(run, FAILED)
    return [RunFailed(run_id=run.id, error=error, totals=totals, finished_at=finished_at)]


def decide_succeed(run: Run, output: Any, totals: RunTotals, finished_at: datetime) -> list[BaseModel]:
    check_transition(run, SUCCEEDED)
    return [RunSucceeded(run_id=run.id, output=output, totals=totals, finished_at=finished_at)]


def decide_time_out(
    run: Run, error: RunErrorInfo, totals: RunTotals, finished_at: datetime
) -> list[BaseModel]:
    check_transition(run, TIMED_OUT)
    return [
        RunTimedOut(
            run_id=run.id, timeout_s=run.timeout_s, error=error, totals=totals, finished_at=finished_at
        )
    ]


def decide_orphaned(run: Run, totals: RunTotals, finished_at: datetime) -> list[BaseModel]:
    """A run left queued/running by an executor process that is gone: fail it, honestly (`totals`
    are what its metered provider calls spent before the process went away)."""
    error = RunErrorInfo(
        code=EXECUTOR_RESTARTED,
        message="the executor process running this run stopped before it finished; "
        "its provider calls so far were metered, start the run again",
    )
    return decide_fail(run, error, totals, finished_at)


def decide_delete(run: Run, actor: str) -> list[BaseModel]:
    if not run.finished:
        raise RunNotFinished(
            f"run {run.id} is {run.status}; cancel it before deleting it",
            {"run_id": run.id, "status": run.status},
        )
    return [RunDeleted(run_id=run.id, deleted_by=actor)]


def fold(state: Run | None, tenant_id: str, first_position: int, events: list[BaseModel]) -> Run | None:
    """`evolve_run` over the events of one commit, whose first event is at `first_position`."""
    for offset, event in enumerate(events):
        state = evolve_run(state, tenant_id, first_position + offset, event)
    return state
