"""How a run's status is told: the executor's reports are ordered by its stream_version and never move
the status backwards, whatever order they arrive in; the registry's request shows `pending` until then."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_registry.experiments.model import RunProgress, RunRequest, evolve_progress, merge_run_status
from ailab_contracts.events.runs import ExperimentRunCompleted, ExperimentRunStarted

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
SUMMARY = {"examples_total": 3, "examples_scored": 3, "examples_failed": 0, "pass_rate": 1.0}


def started(count: int = 3) -> ExperimentRunStarted:
    return ExperimentRunStarted(experiment_id="exp_1", run_number=1, started_at=T0, example_count=count)


def completed(status: str = "completed", **summary: Any) -> ExperimentRunCompleted:
    return ExperimentRunCompleted.model_validate(
        {
            "experiment_id": "exp_1",
            "run_number": 1,
            "status": status,
            "summary": {**SUMMARY, **summary},
            "completed_at": T0 + timedelta(seconds=5),
        }
    )


def fold(events: list[tuple[Any, int]]) -> RunProgress | None:
    state: RunProgress | None = None
    for event, position in events:
        state = evolve_progress(state, "t1", event, position) or state
    return state


def request() -> RunRequest:
    return RunRequest(
        tenant_id="t1",
        experiment_id="exp_1",
        run_number=1,
        target={"type": "agent_version", "agent_id": "agt_1", "version": 1},
        evaluators=[],
        parameters={},
        concurrency=4,
        expected_output_field="expected",
        dataset_id="dst_1",
        upload_id="upl_1",
        content_sha256=None,
        example_count=3,
        requested_by="u1",
        requested_at=T0 - timedelta(seconds=1),
        supersedes_run_number=None,
        version=2,
    )


def test_started_then_completed() -> None:
    running = evolve_progress(None, "t1", started(), 1)
    assert running is not None
    assert (running.status, running.example_count, running.position) == ("running", 3, 1)
    assert running.started_at == T0.replace(microsecond=123000), "stored at millisecond precision"
    done = evolve_progress(running, "t1", completed(), 5)
    assert done is not None
    assert (done.status, done.started_at, done.summary["pass_rate"], done.position) == (
        "completed",
        running.started_at,
        1.0,
        5,
    )


def test_every_arrival_order_ends_in_the_same_state() -> None:
    events = [(started(), 1), (completed(), 5)]
    outcomes = {repr(fold(list(order))) for order in itertools.permutations(events)}
    assert len(outcomes) == 1
    final = fold(events)
    assert final is not None and final.status == "completed" and final.started_at is not None


def test_a_late_start_report_fills_in_but_never_reopens_the_run() -> None:
    done = evolve_progress(None, "t1", completed(), 5)
    assert done is not None and done.started_at is None and done.example_count == 3
    late = evolve_progress(done, "t1", started(count=3), 1)
    assert late is not None
    assert (late.status, late.started_at, late.position) == ("completed", T0.replace(microsecond=123000), 5)
    assert evolve_progress(late, "t1", started(), 1) is None, "a redelivery changes nothing"


def test_redelivered_or_older_terminal_reports_are_ignored() -> None:
    done = fold([(started(), 1), (completed(), 5)])
    assert evolve_progress(done, "t1", completed(), 5) is None
    assert evolve_progress(done, "t1", completed("cancelled"), 4) is None
    corrected = evolve_progress(done, "t1", completed("failed", examples_failed=1), 6)
    assert corrected is not None and (corrected.status, corrected.position) == ("failed", 6)


def test_merge_tells_not_started_pending_running_and_done() -> None:
    assert merge_run_status("exp_1", None, None).status == "not_started"
    pending = merge_run_status("exp_1", request(), None)
    assert (pending.status, pending.run_number, pending.examples_total, pending.started_at) == (
        "pending",
        1,
        3,
        None,
    )
    assert pending.active
    early = merge_run_status("exp_1", request(), None, scored=1)
    assert early.status == "running", "results before the start report mean the executor is at work"
    running = merge_run_status("exp_1", request(), fold([(started(count=4), 1)]), scored=2, failed=1)
    assert (running.status, running.examples_total, running.examples_scored, running.examples_failed) == (
        "running",
        4,
        2,
        1,
    )
    done = merge_run_status(
        "exp_1", request(), fold([(started(), 1), (completed(examples_total=3), 5)]), 3, 0
    )
    assert (done.status, done.summary["examples_scored"], done.completed_at) == (
        "completed",
        3,
        (T0 + timedelta(seconds=5)).replace(microsecond=123000),
    )
    assert not done.active
    assert done.requested_at == request().requested_at and done.requested_by == "u1"
