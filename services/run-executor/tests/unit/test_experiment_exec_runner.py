"""Experiment runs with in-memory fakes: events and versions, concurrency, target failures,
resuming an interrupted run, redelivery, supersede, dataset changes and concurrent writers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from ailab_contracts import REGISTRY, EventEnvelope, new_envelope
from ailab_contracts.events.experiments import ExperimentStarted, experiment_stream
from ailab_contracts.events.runs import (
    ExperimentExampleScored,
    ExperimentRunCompleted,
    ExperimentRunStarted,
    experiment_run_stream,
)
from run_executor.experiments.executor import ExperimentExecutor
from run_executor.experiments.memory import InMemoryRunRequests, InMemoryRunStore, ListExampleSource
from run_executor.experiments.ports import JudgeReply, JudgeRequest, TargetError, TargetResult
from run_executor.experiments.runner import ExperimentRunner

pytestmark = pytest.mark.unit

TENANT = "t1"
UPLOAD = "upl_1"
EVALUATORS = [
    {"name": "exact", "type": "exact_match", "config": {}},
    {"name": "shape", "type": "regex", "config": {"pattern": r"^answer-\d+$", "full_match": True}},
]


def rows(n: int) -> list[dict[str, Any]]:
    return [{"question": f"q{i}", "i": i, "expected": f"answer-{i}"} for i in range(n)]


def started(
    *,
    run_number: int = 1,
    count: int = 100,
    concurrency: int = 4,
    supersedes: int | None = None,
    upload: str = UPLOAD,
    experiment_id: str = "exp_1",
    evaluators: list[dict[str, Any]] | None = None,
) -> tuple[EventEnvelope, ExperimentStarted]:
    event = ExperimentStarted.model_validate(
        {
            "experiment_id": experiment_id,
            "run_number": run_number,
            "target": {"type": "agent_version", "agent_id": "agt_1", "version": 1},
            "evaluators": evaluators or EVALUATORS,
            "parameters": {"temperature": 0},
            "concurrency": concurrency,
            "expected_output_field": "expected",
            "dataset_id": "dst_1",
            "upload_id": upload,
            "example_count": count,
            "requested_by": "usr_1",
            "supersedes_run_number": supersedes,
        }
    )
    envelope = new_envelope(
        REGISTRY,
        event,
        stream_id=experiment_stream(TENANT, experiment_id),
        stream_version=1 + run_number,
        tenant_id=TENANT,
        producer="agent-registry",
        correlation_id="req-1",
        causation_id="req-1",
    )
    return envelope, event


class FakeTarget:
    """Answers `answer-<i>` except: every 4th example a wrong answer, every 10th (i % 10 == 9) fails."""

    def __init__(self, delay_s: float = 0.0, gate: asyncio.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate
        self.calls: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.seen_inputs: list[Mapping[str, Any]] = []

    async def run(
        self,
        tenant_id: str,
        target: Mapping[str, Any],
        inputs: Mapping[str, Any],
        parameters: Mapping[str, Any],
        cancel: asyncio.Event,
    ) -> TargetResult:
        i = int(inputs["i"])
        self.calls.append(i)
        self.seen_inputs.append(inputs)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay_s:
                waiter = asyncio.ensure_future(cancel.wait())
                try:
                    await asyncio.wait({waiter}, timeout=self.delay_s)
                finally:
                    waiter.cancel()
                if cancel.is_set():
                    return TargetResult(error=TargetError("cancelled", "stopped"))
            if i % 10 == 9:
                return TargetResult(
                    run_id=f"run_{i}", error=TargetError("provider_timeout", "timed out"), latency_ms=50.0
                )
            answer = f"answer-{i}" if i % 4 else f"wrong-{i}"
            return TargetResult(
                output={"text": answer},
                run_id=f"run_{i}",
                latency_ms=float(i + 1),
                tokens_in=10,
                tokens_out=2,
                cost_usd=Decimal("0.0001") * (i + 1),
            )
        finally:
            self.in_flight -= 1


def runner_for(
    store: InMemoryRunStore, target: Any, n: int = 100, *, source: Any = None, **kwargs: Any
) -> ExperimentRunner:
    return ExperimentRunner(
        recorder=store,
        reader=store,
        source=source or ListExampleSource(rows(n), UPLOAD),
        target=target,
        **kwargs,
    )


def executor_for(
    runner: ExperimentRunner, store: InMemoryRunStore, requests: InMemoryRunRequests | None = None
) -> ExperimentExecutor:
    return ExperimentExecutor(runner, requests or InMemoryRunRequests(), store)


async def stream(
    store: InMemoryRunStore, run_number: int = 1, experiment_id: str = "exp_1"
) -> list[EventEnvelope]:
    return await store.read_stream(experiment_run_stream(TENANT, experiment_id, run_number))


def payloads(envelopes: Sequence[EventEnvelope], kind: type[BaseModel]) -> list[Any]:
    out = []
    for env in envelopes:
        event = REGISTRY.parse_payload(env.event_type, env.schema_version, env.payload)
        if isinstance(event, kind):
            out.append(event)
    return out


async def until(store: InMemoryRunStore, ok: Any, timeout_s: float = 10) -> None:
    """Wait (bounded) until run 1's stream satisfies `ok`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if ok(await stream(store)):
            return
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


def scored_indexes(envelopes: Sequence[EventEnvelope]) -> list[int]:
    return [e.example_index for e in payloads(envelopes, ExperimentExampleScored)]


# --- a whole run ---------------------------------------------------------------------------------


async def test_a_run_records_started_every_example_and_the_summary() -> None:
    store = InMemoryRunStore()
    target = FakeTarget(delay_s=0.002)
    envelope, event = started(concurrency=8)
    outcome = await runner_for(store, target).run(envelope, event)
    assert outcome == "completed"
    events = await stream(store)
    assert [e.stream_version for e in events] == list(range(1, 103))  # consecutive, no gaps
    assert events[0].event_type == "runs.ExperimentRunStarted"
    assert events[-1].event_type == "runs.ExperimentRunCompleted"
    assert sorted(scored_indexes(events)) == list(range(100))
    assert {e.causation_id for e in events} == {str(envelope.event_id)}
    assert {e.correlation_id for e in events} == {"req-1"}
    assert {e.tenant_id for e in events} == {TENANT}
    start = payloads(events, ExperimentRunStarted)[0]
    assert (start.example_count, start.run_number) == (100, 1)

    results = {r.example_index: r for r in payloads(events, ExperimentExampleScored)}
    assert results[1].output == {"text": "answer-1"} and results[1].run_id == "run_1"
    assert [(s.evaluator, s.passed) for s in results[1].scores] == [("exact", True), ("shape", True)]
    assert [(s.evaluator, s.passed) for s in results[4].scores] == [("exact", False), ("shape", False)]
    assert results[9].error is not None and results[9].error.code == "provider_timeout"
    assert results[9].scores == [] and results[9].run_id == "run_9"
    assert results[1].cost_usd == "0.0002" and (results[1].tokens_in, results[1].tokens_out) == (10, 2)

    done = payloads(events, ExperimentRunCompleted)[0]
    assert done.status == "completed" and done.error is None
    summary = done.summary
    assert (summary.examples_total, summary.examples_scored, summary.examples_failed) == (100, 90, 10)
    # of the 90 scored, i % 4 == 0 are wrong: 0, 4, ..., 96 minus those failing (none: i%10==9 is odd)
    wrong = len([i for i in range(100) if i % 4 == 0 and i % 10 != 9])
    assert summary.pass_rate == pytest.approx((90 - wrong) / 90)
    assert {e.evaluator: e.pass_rate for e in summary.evaluators}["exact"] == pytest.approx((90 - wrong) / 90)
    ok_costs = [Decimal("0.0001") * (i + 1) for i in range(100) if i % 10 != 9]
    assert summary.cost_total_usd == format(sum(ok_costs, Decimal(0)).normalize(), "f")
    assert summary.latency_p50_ms is not None and summary.latency_p99_ms is not None


async def test_the_target_gets_the_example_without_the_answer_and_the_parameters() -> None:
    store = InMemoryRunStore()
    target = FakeTarget()
    envelope, event = started(count=3)
    await runner_for(store, target, 3).run(envelope, event)
    assert sorted(target.seen_inputs, key=lambda x: x["i"]) == [
        {"question": f"q{i}", "i": i} for i in range(3)
    ]


@pytest.mark.parametrize("concurrency", [1, 3, 16])
async def test_never_more_than_concurrency_examples_in_flight(concurrency: int) -> None:
    store = InMemoryRunStore()
    target = FakeTarget(delay_s=0.003)
    envelope, event = started(count=40, concurrency=concurrency)
    await runner_for(store, target, 40).run(envelope, event)
    assert target.max_in_flight == concurrency
    assert sorted(target.calls) == list(range(40))


async def test_target_exceptions_and_timeouts_are_failed_examples_not_a_failed_run() -> None:
    class Flaky(FakeTarget):
        async def run(
            self,
            tenant_id: str,
            target: Mapping[str, Any],
            inputs: Mapping[str, Any],
            parameters: Mapping[str, Any],
            cancel: asyncio.Event,
        ) -> TargetResult:
            if inputs["i"] == 2:
                raise ValueError("boom")
            if inputs["i"] == 3:
                await asyncio.sleep(5)
            if inputs["i"] == 5:
                return TargetResult(output={"bad.key": 1})  # not storable
            return await super().run(tenant_id, target, inputs, parameters, cancel)

    store = InMemoryRunStore()
    envelope, event = started(count=6)
    outcome = await runner_for(store, Flaky(), 6, example_timeout_s=0.2).run(envelope, event)
    assert outcome == "completed"
    events = await stream(store)
    results = {r.example_index: r for r in payloads(events, ExperimentExampleScored)}
    assert (
        results[2].error is not None
        and results[2].error.code == "target_error"
        and "boom" in results[2].error.message
    )
    assert results[3].error is not None and results[3].error.code == "example_timeout"
    assert (
        results[5].error is not None
        and results[5].error.code == "output_not_storable"
        and results[5].output is None
    )
    summary = payloads(events, ExperimentRunCompleted)[0].summary
    assert (summary.examples_scored, summary.examples_failed) == (3, 3)


async def test_an_empty_dataset_completes_at_once() -> None:
    store = InMemoryRunStore()
    envelope, event = started(count=0)
    assert await runner_for(store, FakeTarget(), 0).run(envelope, event) == "completed"
    events = await stream(store)
    assert [e.event_type for e in events] == ["runs.ExperimentRunStarted", "runs.ExperimentRunCompleted"]


# --- the dataset -----------------------------------------------------------------------------------


async def test_another_file_fails_the_run_with_dataset_changed() -> None:
    store = InMemoryRunStore()
    target = FakeTarget()
    envelope, event = started(count=10, upload="upl_old")
    assert await runner_for(store, target, 10).run(envelope, event) == "failed"
    done = payloads(await stream(store), ExperimentRunCompleted)[0]
    assert done.status == "failed" and done.error is not None and done.error.code == "dataset_changed"
    assert target.calls == [] and done.summary.examples_scored == 0


async def test_fewer_rows_than_pinned_fails_after_scoring_what_exists() -> None:
    store = InMemoryRunStore()
    envelope, event = started(count=12)
    assert await runner_for(store, FakeTarget(), 10).run(envelope, event) == "failed"
    events = await stream(store)
    done = payloads(events, ExperimentRunCompleted)[0]
    assert done.error is not None and done.error.code == "dataset_changed"
    assert len(scored_indexes(events)) == 10 and done.summary.examples_total == 12


# --- resuming ------------------------------------------------------------------------------------


async def record_prior_progress(store: InMemoryRunStore, envelope: EventEnvelope, done: list[int]) -> None:
    """What an earlier process left: the start and the results of `done`, then it died."""
    stream_id = experiment_run_stream(TENANT, "exp_1", 1)
    start = ExperimentRunStarted(
        experiment_id="exp_1", run_number=1, started_at=envelope.occurred_at, example_count=100
    )
    version = await store.record(stream_id, 0, TENANT, [start], str(envelope.event_id))
    for i in done:
        scored = ExperimentExampleScored(
            experiment_id="exp_1", run_number=1, example_index=i, output={"text": f"answer-{i}"}
        )
        version = await store.record(stream_id, version, TENANT, [scored], str(envelope.event_id))


async def test_an_interrupted_run_resumes_and_runs_only_the_remaining_examples() -> None:
    store, requests = InMemoryRunStore(), InMemoryRunRequests()
    envelope, event = started(count=100, concurrency=8)
    done_before = list(range(0, 80, 2))  # 40 examples, not a prefix
    await record_prior_progress(store, envelope, done_before)
    await requests.save(experiment_run_stream(TENANT, "exp_1", 1), envelope)

    target = FakeTarget()
    executor = executor_for(runner_for(store, target), store, requests)
    assert await store.open_runs() == [experiment_run_stream(TENANT, "exp_1", 1)]
    assert await executor.resume_open_runs() == 1
    await executor.wait_idle(10)

    assert sorted(target.calls) == sorted(set(range(100)) - set(done_before))
    assert len(target.calls) == 60
    events = await stream(store)
    indexes = scored_indexes(events)
    assert sorted(indexes) == list(range(100)) and len(indexes) == len(set(indexes))
    assert len([e for e in events if e.event_type == "runs.ExperimentRunStarted"]) == 1
    done = payloads(events, ExperimentRunCompleted)[0]
    assert done.summary.examples_scored + done.summary.examples_failed == 100  # earlier results count
    assert await store.open_runs() == []


async def test_a_run_killed_mid_way_resumes_in_a_new_executor_without_scoring_twice() -> None:
    store, requests = InMemoryRunStore(), InMemoryRunRequests()
    envelope, event = started(count=100, concurrency=4)
    first_target = FakeTarget(delay_s=0.002)
    first = executor_for(runner_for(store, first_target), store, requests)
    await first.accept(envelope, event)
    await until(store, lambda evs: len(scored_indexes(evs)) >= 40)
    await first.stop()  # the process dies: nothing completes the run
    recorded = scored_indexes(await stream(store))
    assert 40 <= len(recorded) < 100
    assert not payloads(await stream(store), ExperimentRunCompleted)

    second_target = FakeTarget()
    second = executor_for(runner_for(store, second_target), store, requests)
    second.start()
    await second.wait_idle(10)
    assert sorted(second_target.calls) == sorted(set(range(100)) - set(recorded))
    indexes = scored_indexes(await stream(store))
    assert sorted(indexes) == list(range(100))
    assert payloads(await stream(store), ExperimentRunCompleted)[0].status == "completed"


async def test_a_redelivered_start_does_nothing() -> None:
    store = InMemoryRunStore()
    target = FakeTarget()
    executor = executor_for(runner_for(store, target, 20), store)
    envelope, event = started(count=20)
    await executor.accept(envelope, event)
    await executor.wait_idle(10)
    before = await stream(store)
    assert before[-1].event_type == "runs.ExperimentRunCompleted"
    await executor.accept(envelope, event)  # at-least-once: the same request again
    await executor.wait_idle(10)
    assert await stream(store) == before
    assert len(target.calls) == 20


async def test_a_redelivery_while_running_starts_nothing_new() -> None:
    store = InMemoryRunStore()
    gate = asyncio.Event()
    target = FakeTarget(gate=gate)
    executor = executor_for(runner_for(store, target, 10), store)
    envelope, event = started(count=10, concurrency=2)
    await executor.accept(envelope, event)
    await executor.accept(envelope, event)
    assert len(executor.active) == 1
    gate.set()
    await executor.wait_idle(10)
    assert sorted(target.calls) == list(range(10))
    assert len(scored_indexes(await stream(store))) == 10


async def test_accept_returns_once_the_start_is_recorded() -> None:
    store = InMemoryRunStore()
    gate = asyncio.Event()
    executor = executor_for(runner_for(store, FakeTarget(gate=gate), 5), store)
    envelope, event = started(count=5)
    await executor.accept(envelope, event)
    events = await stream(store)
    assert [e.event_type for e in events] == ["runs.ExperimentRunStarted"]  # durable before returning
    gate.set()
    await executor.wait_idle(10)


# --- superseding -----------------------------------------------------------------------------------


async def test_a_forced_run_cancels_the_run_it_supersedes() -> None:
    store = InMemoryRunStore()
    target = FakeTarget(delay_s=0.05)
    executor = executor_for(runner_for(store, target, 100), store)
    env1, ev1 = started(run_number=1, count=100, concurrency=2)
    await executor.accept(env1, ev1)
    await until(store, lambda evs: len(scored_indexes(evs)) >= 2)
    fast = FakeTarget()
    executor.runner._target = fast  # noqa: SLF001 - the second run needs no delay
    env2, ev2 = started(run_number=2, count=100, concurrency=8, supersedes=1)
    await executor.accept(env2, ev2)
    await executor.wait_idle(10)

    first = await stream(store, 1)
    done1 = payloads(first, ExperimentRunCompleted)[0]
    assert done1.status == "cancelled" and done1.error is not None and done1.error.code == "superseded"
    assert done1.summary.examples_scored + done1.summary.examples_failed == len(scored_indexes(first)) < 100
    assert first[-1].event_type == "runs.ExperimentRunCompleted" and first[-1].causation_id == str(
        env1.event_id
    )
    assert payloads(await stream(store, 2), ExperimentRunCompleted)[0].status == "completed"


async def test_superseding_a_run_open_in_the_store_but_not_running_here_cancels_its_stream() -> None:
    store, requests = InMemoryRunStore(), InMemoryRunRequests()
    env1, _ = started(run_number=1)
    await record_prior_progress(store, env1, [0, 1, 2])
    await requests.save(experiment_run_stream(TENANT, "exp_1", 1), env1)
    executor = executor_for(runner_for(store, FakeTarget(), 5), store, requests)
    env2, ev2 = started(run_number=2, count=5, supersedes=1)
    await executor.accept(env2, ev2)
    await executor.wait_idle(10)
    first = await stream(store, 1)
    done1 = payloads(first, ExperimentRunCompleted)[0]
    assert done1.status == "cancelled" and done1.summary.examples_total == 100
    assert [e.evaluator for e in done1.summary.evaluators] == ["exact", "shape"]
    assert first[-1].causation_id == str(env2.event_id)
    assert await store.open_runs() == []  # never resumed


# --- concurrent writers ------------------------------------------------------------------------------


class RacingStore(InMemoryRunStore):
    """Before the run's first result is appended, another writer appends results for 0 .. 4."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False
        self.conflicts = 0

    async def record(
        self,
        stream_id: str,
        expected_version: int,
        tenant_id: str,
        events: Sequence[BaseModel],
        causation_id: str | None,
        correlation_id: str | None = None,
    ) -> int:
        if not self.raced and any(isinstance(e, ExperimentExampleScored) for e in events):
            self.raced = True
            other = [
                ExperimentExampleScored(
                    experiment_id="exp_1", run_number=1, example_index=i, output="other writer"
                )
                for i in range(5)
            ]
            await super().record(stream_id, expected_version, tenant_id, other, "other")
        try:
            return await super().record(
                stream_id, expected_version, tenant_id, events, causation_id, correlation_id
            )
        except Exception:
            self.conflicts += 1
            raise


async def test_a_conflicting_writer_never_makes_an_example_appear_twice() -> None:
    store = RacingStore()
    envelope, event = started(count=30, concurrency=6)
    assert await runner_for(store, FakeTarget(delay_s=0.001), 30).run(envelope, event) == "completed"
    events = await stream(store)
    indexes = scored_indexes(events)
    assert store.conflicts >= 1
    assert sorted(indexes) == list(range(30)) and len(indexes) == 30
    assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
    results = {r.example_index: r for r in payloads(events, ExperimentExampleScored)}
    assert all(results[i].output == "other writer" for i in range(5))  # the first report wins


class UnreliableStore(InMemoryRunStore):
    """Every third append is written but reported as failed (a timeout after the write)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def record(
        self,
        stream_id: str,
        expected_version: int,
        tenant_id: str,
        events: Sequence[BaseModel],
        causation_id: str | None,
        correlation_id: str | None = None,
    ) -> int:
        self.calls += 1
        version = await super().record(
            stream_id, expected_version, tenant_id, events, causation_id, correlation_id
        )
        if self.calls % 3 == 0:
            raise TimeoutError("write timed out (but happened)")
        return version


async def test_appends_with_unknown_outcome_are_not_duplicated() -> None:
    store = UnreliableStore()
    envelope, event = started(count=40, concurrency=4)
    runner = runner_for(store, FakeTarget(delay_s=0.001), 40)
    assert await runner.run(envelope, event) == "completed"
    events = await stream(store)
    indexes = scored_indexes(events)
    assert sorted(indexes) == list(range(40)) and len(indexes) == 40
    assert len(payloads(events, ExperimentRunCompleted)) == 1


# --- throughput ------------------------------------------------------------------------------------


async def test_throughput_with_an_instant_target(capsys: pytest.CaptureFixture[str]) -> None:
    store = InMemoryRunStore()
    envelope, event = started(count=2000, concurrency=16)
    began = time.perf_counter()
    assert await runner_for(store, FakeTarget(), 2000).run(envelope, event) == "completed"
    elapsed = time.perf_counter() - began
    assert len(scored_indexes(await stream(store))) == 2000
    assert store.appends < 2000  # results are batched into commits
    with capsys.disabled():
        print(
            f"\n[experiments] in-memory: 2000 examples in {elapsed:.2f}s = {2000 / elapsed:.0f} examples/s, "
            f"{store.appends} commits"
        )


# --- the judge in a run ------------------------------------------------------------------------------


class FakeJudge:
    def __init__(self) -> None:
        self.requests: list[JudgeRequest] = []

    async def __call__(self, request: JudgeRequest) -> JudgeReply:
        self.requests.append(request)
        return JudgeReply('{"score": 0.75, "reasoning": "close enough"}', Decimal("0.002"))


async def test_llm_judge_scores_each_example_and_its_cost_is_added() -> None:
    judge = FakeJudge()
    evaluators = [
        EVALUATORS[0],
        {
            "name": "judge",
            "type": "llm_judge",
            "config": {
                "prompt": "Rate {{output}} against {{expected}}",
                "model": "gpt-4o-mini",
                "pass_threshold": 0.7,
            },
        },
    ]
    store = InMemoryRunStore()
    envelope, event = started(count=3, evaluators=evaluators)
    assert await runner_for(store, FakeTarget(), 3, judge=judge).run(envelope, event) == "completed"
    events = await stream(store)
    results = {r.example_index: r for r in payloads(events, ExperimentExampleScored)}
    judged = results[1].scores[1]
    assert (judged.evaluator, judged.score, judged.passed, judged.detail) == (
        "judge",
        0.75,
        True,
        "close enough",
    )
    assert results[1].cost_usd == "0.0022"  # target 0.0002 + judge 0.002
    assert len(judge.requests) == 3
    user = sorted(r.messages[1]["content"] for r in judge.requests)
    assert user == sorted(
        f"Rate {a} against answer-{i}" for i, a in enumerate(["wrong-0", "answer-1", "answer-2"])
    )
    summary = payloads(events, ExperimentRunCompleted)[0].summary
    assert {e.evaluator: e.mean_score for e in summary.evaluators}["judge"] == pytest.approx(0.75)
