"""The run state machine: folding events, allowed transitions, and the decisions' refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ailab_contracts.events.runs import (
    RunCancelled,
    RunDeleted,
    RunErrorInfo,
    RunQueued,
    RunStarted,
    RunSucceeded,
    RunTotals,
)
from run_executor.domain.errors import InvalidTransition, RunAlreadyFinished, RunNotFinished
from run_executor.domain.model import (
    STATUSES,
    TERMINAL,
    TRANSITIONS,
    Run,
    check_transition,
    decide_cancel,
    decide_delete,
    decide_fail,
    decide_orphaned,
    decide_start,
    decide_succeed,
    decide_time_out,
    evolve_run,
    fold,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
TOTALS = RunTotals(tokens_in=5, tokens_out=6, cost_usd="0.001", provider_calls=1, steps=2, latency_ms=10)
ERROR = RunErrorInfo(code="boom", message="it broke", node_id="n1")


def queued_run() -> Run:
    event = RunQueued(
        run_id="run_1",
        agent_id="agt_1",
        agent_version=2,
        project_id="prj_1",
        inputs={"q": "hi"},
        metadata={"k": "v"},
        timeout_s=30,
        max_steps=10,
        trace_id="0" * 31 + "1",
        created_by="usr_1",
        queued_at=NOW,
    )
    run = fold(None, "acme", 1, [event])
    assert run is not None
    return run


def running_run() -> Run:
    run = queued_run()
    after = fold(run, "acme", 2, decide_start(run, NOW))
    assert after is not None
    return after


def test_queued_run_is_folded_from_its_first_event() -> None:
    run = queued_run()
    assert (run.id, run.tenant_id, run.status, run.version) == ("run_1", "acme", "queued", 1)
    assert run.created_at == NOW.replace(microsecond=123000)  # millisecond precision, as stored
    assert run.stream_id == "run:acme:run_1" and not run.finished
    assert RunTotals(**run.totals) == RunTotals()


def test_the_happy_path_and_each_terminal_event() -> None:
    run = running_run()
    assert run.status == "running" and run.started_at is not None and run.version == 2
    done = fold(run, "acme", 3, decide_succeed(run, {"a": 1}, TOTALS, NOW))
    assert done is not None and done.status == "succeeded" and done.output == {"a": 1}
    assert done.totals["tokens_in"] == 5 and done.finished and done.version == 3
    failed = fold(run, "acme", 3, decide_fail(run, ERROR, TOTALS, NOW))
    assert failed is not None and failed.error == {"code": "boom", "message": "it broke", "node_id": "n1"}
    timed = fold(run, "acme", 3, decide_time_out(run, ERROR, TOTALS, NOW))
    assert timed is not None and timed.status == "timed_out"
    cancelled = fold(run, "acme", 3, decide_cancel(run, "usr_2", "why", TOTALS, NOW))
    assert cancelled is not None and (cancelled.status, cancelled.cancelled_by, cancelled.cancel_reason) == (
        "cancelled",
        "usr_2",
        "why",
    )


def test_a_queued_run_can_be_cancelled_or_failed_but_not_finished_otherwise() -> None:
    run = queued_run()
    assert fold(run, "acme", 2, decide_cancel(run, "u", None, RunTotals(), NOW)).status == "cancelled"  # type: ignore[union-attr]
    assert fold(run, "acme", 2, decide_fail(run, ERROR, RunTotals(), NOW)).status == "failed"  # type: ignore[union-attr]
    with pytest.raises(InvalidTransition):
        decide_succeed(run, None, TOTALS, NOW)
    with pytest.raises(InvalidTransition):
        decide_time_out(run, ERROR, TOTALS, NOW)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_finished_runs_never_move_again(terminal: str) -> None:
    run = Run(**{**running_run().__dict__, "status": terminal})
    for target in STATUSES:
        with pytest.raises(RunAlreadyFinished):
            check_transition(run, target)
    with pytest.raises(RunAlreadyFinished):
        decide_cancel(run, "u", None, RunTotals(), NOW)
    assert decide_delete(run, "u") == [RunDeleted(run_id="run_1", deleted_by="u")]


def test_transition_table_is_forward_only() -> None:
    order = {"queued": 0, "running": 1}
    for source, targets in TRANSITIONS.items():
        for target in targets:
            assert order.get(target, 2) > order.get(source, 2)
    assert set(TRANSITIONS) == set(STATUSES)


def test_only_finished_runs_can_be_deleted_and_deleted_runs_are_marked() -> None:
    with pytest.raises(RunNotFinished):
        decide_delete(running_run(), "u")
    with pytest.raises(RunNotFinished):
        decide_delete(queued_run(), "u")
    run = running_run()
    done = fold(run, "acme", 3, decide_succeed(run, "x", TOTALS, NOW))
    assert done is not None
    deleted = evolve_run(done, "acme", 4, RunDeleted(run_id="run_1", deleted_by="u"))
    assert deleted is not None and deleted.deleted and deleted.status == "succeeded" and deleted.version == 4


def test_orphaned_runs_fail_as_executor_restarted_with_their_metered_totals() -> None:
    [event] = decide_orphaned(running_run(), TOTALS, NOW)
    assert event.error.code == "executor_restarted" and event.totals == TOTALS  # type: ignore[attr-defined]
    [event] = decide_orphaned(queued_run(), RunTotals(), NOW)
    assert event.error.code == "executor_restarted"  # type: ignore[attr-defined]


def test_events_of_unknown_runs_and_repeats_are_ignored() -> None:
    assert evolve_run(None, "acme", 2, RunStarted(run_id="run_x", started_at=NOW)) is None
    run = queued_run()
    assert evolve_run(run, "acme", 1, RunQueued(**{**_queued_fields(), "run_id": "run_1"})) is run
    assert (
        evolve_run(run, "acme", 2, RunSucceeded(run_id="run_1", totals=TOTALS, finished_at=NOW)).status
        == "succeeded"
    )  # type: ignore[union-attr]
    assert evolve_run(
        run, "acme", 2, RunCancelled(run_id="run_1", cancelled_by="u", totals=TOTALS, finished_at=NOW)
    )


def _queued_fields() -> dict[str, object]:
    return {
        "agent_id": "agt_1",
        "agent_version": 2,
        "timeout_s": 30,
        "max_steps": 10,
        "trace_id": "0" * 31 + "1",
        "created_by": "usr_1",
        "queued_at": NOW,
    }


def test_contract_refuses_unstorable_inputs_and_outputs() -> None:
    with pytest.raises(ValueError):
        RunQueued(run_id="r", inputs={"a.b": 1}, **_queued_fields())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RunSucceeded(run_id="r", output={"$x": 1}, totals=TOTALS, finished_at=NOW)
    with pytest.raises(ValueError):
        RunTotals(cost_usd="1e-5")  # fixed-point decimal strings only
