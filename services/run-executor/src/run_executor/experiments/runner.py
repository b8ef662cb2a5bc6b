"""One experiment run: `registry.ExperimentStarted` in, the `runs.Experiment*` events of the stream
`experiment-run:{tenant}:{experiment_id}:{run_number}` out (causation_id = the ExperimentStarted
event id, correlation_id = its correlation id).

    open():    read the run stream; completed -> nothing to do; else record ExperimentRunStarted
               (version 1) unless the stream has it
    execute(): page through the pinned dataset file; skip every example the stream already has a
               result for; run the others with at most `concurrency` in flight: target -> evaluators
               -> ExperimentExampleScored; then ExperimentRunCompleted with the summary

Inputs: the target gets the example's data minus the answer fields (the experiment's
`expected_output_field` and every evaluator's own `field`, see `evaluators.expected_fields`), and
the run's `parameters`.

Endings: `completed` when every row 0 .. example_count-1 has a result; `failed` when the dataset
cannot be read as pinned (`dataset_changed`, `dataset_not_found`, `dataset_unavailable`, or fewer
rows than `example_count`: `dataset_changed`); `cancelled` when `cancel()` was called (a forced
newer run supersedes it). A target failure is a failed example (`error` set, counted in
`examples_failed`), not a failed run. Examples still in flight when a run is cancelled or fails are
stopped (their targets get the `cancel` event) and their results are not recorded. When the
process stops (task cancelled) nothing more is recorded: the stream stays open and
`ExperimentExecutor` resumes the run on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import ValidationError

from ailab_contracts import REGISTRY, EventEnvelope, EventRegistry, utc_now
from ailab_contracts.events.experiments import ExperimentStarted, LlmJudgeEvaluator
from ailab_contracts.events.runs import (
    EvaluatorScore,
    ExperimentExampleScored,
    ExperimentRunCompleted,
    ExperimentRunStarted,
    RunError,
    experiment_run_stream,
)

from .evaluators import Evaluator, expected_fields, expected_text, score_sync, without_fields
from .judge import JudgeBinding
from .ports import (
    DATASET_CHANGED,
    EventRecorder,
    ExampleSource,
    ExperimentRunError,
    Judge,
    JudgePrompts,
    StreamReader,
    TargetError,
    TargetResult,
    TargetRunner,
)
from .summary import summarize, usd
from .writer import RunClosed, RunState, RunStreamWriter, fold_run

log = logging.getLogger(__name__)

MAX_MESSAGE = 4000

Outcome = Literal["completed", "failed", "cancelled", "closed_elsewhere"]


def run_stream_of(tenant_id: str, event: ExperimentStarted) -> str:
    return experiment_run_stream(tenant_id, event.experiment_id, event.run_number)


@dataclass
class OpenRun:
    """A run that `open()` prepared: its definition, stream writer and stop signal."""

    envelope: EventEnvelope
    event: ExperimentStarted
    writer: RunStreamWriter
    evaluators: list[Evaluator]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: RunError | None = None
    executed: int = 0  # examples this process ran (target called) in this execution
    skipped: int = 0  # examples skipped because the stream already had their result

    @property
    def tenant_id(self) -> str:
        return self.envelope.tenant_id

    @property
    def stream_id(self) -> str:
        return self.writer.stream_id

    @property
    def state(self) -> RunState:
        return self.writer.state

    def cancel(self, code: str, message: str) -> None:
        """Stop the run; it ends `cancelled` with this reason."""
        if self.cancel_reason is None:
            self.cancel_reason = RunError(code=code, message=message[:MAX_MESSAGE])
        self.stop.set()


class ExperimentRunner:
    def __init__(
        self,
        *,
        recorder: EventRecorder,
        reader: StreamReader,
        source: ExampleSource,
        target: TargetRunner,
        judge: Judge | None = None,
        judge_prompts: JudgePrompts | None = None,
        registry: EventRegistry = REGISTRY,
        clock: Callable[[], datetime] = utc_now,
        max_batch: int = 50,
        example_timeout_s: float | None = None,
    ) -> None:
        self._recorder = recorder
        self._reader = reader
        self._source = source
        self._target = target
        self._judge = judge
        self._judge_prompts = judge_prompts
        self._registry = registry
        self._clock = clock
        self._max_batch = max_batch
        self._timeout = example_timeout_s

    # --- opening ---------------------------------------------------------------------------------
    async def open(self, envelope: EventEnvelope, event: ExperimentStarted) -> OpenRun | None:
        """Prepare the run and make sure `runs.ExperimentRunStarted` is recorded (the durable mark
        that this service accepted it); None when the run is already completed."""
        stream_id = run_stream_of(envelope.tenant_id, event)
        state = fold_run(await self._reader.read_stream(stream_id), self._registry)
        if state.completed is not None:
            return None
        writer = self._writer(envelope, stream_id, state)
        run = OpenRun(envelope, event, writer, list(event.evaluators))
        if state.started is None:
            started = ExperimentRunStarted(
                experiment_id=event.experiment_id,
                run_number=event.run_number,
                started_at=self._clock(),
                example_count=event.example_count,
            )
            try:
                await writer.write(started)
            except RunClosed:
                await writer.close()
                return None
            except BaseException:
                await writer.abort()
                raise
        return run

    def _writer(self, envelope: EventEnvelope, stream_id: str, state: RunState) -> RunStreamWriter:
        return RunStreamWriter(
            self._recorder,
            self._reader,
            self._registry,
            stream_id=stream_id,
            tenant_id=envelope.tenant_id,
            causation_id=str(envelope.event_id),
            correlation_id=envelope.correlation_id,
            state=state,
            max_batch=self._max_batch,
        )

    async def cancel_stream(
        self,
        tenant_id: str,
        experiment_id: str,
        run_number: int,
        reason: RunError,
        envelope: EventEnvelope,
        evaluator_names: list[str] | None = None,
    ) -> bool:
        """Record `cancelled` on a run that is open in the store but runs nowhere in this process
        (caused by `envelope`, the request that superseded it); False when it is not open."""
        stream_id = experiment_run_stream(tenant_id, experiment_id, run_number)
        state = fold_run(await self._reader.read_stream(stream_id), self._registry)
        if state.started is None or state.completed is not None:
            return False
        writer = self._writer(envelope, stream_id, state)
        started = state.started
        try:
            return await writer.finish(
                lambda s: ExperimentRunCompleted(
                    experiment_id=experiment_id,
                    run_number=run_number,
                    status="cancelled",
                    summary=summarize(
                        s.results.values(), evaluator_names or _names_of(s), started.example_count
                    ),
                    error=reason,
                    completed_at=self._clock(),
                )
            )
        except RunClosed:
            return False
        finally:
            await writer.close()

    # --- executing -------------------------------------------------------------------------------
    async def execute(self, run: OpenRun) -> Outcome:
        """Run every example still without a result, then record the completion."""
        try:
            failure = await self._run_examples(run)
            return await self._complete(run, failure)
        except RunClosed:
            log.info("run completed elsewhere", extra={"fields": {"stream_id": run.stream_id}})
            return "closed_elsewhere"
        except asyncio.CancelledError:
            await run.writer.abort()  # the process stops: leave the run open, to be resumed
            raise
        finally:
            await run.writer.close()

    async def run(self, envelope: EventEnvelope, event: ExperimentStarted) -> Outcome | None:
        """`open` then `execute` in one go (None: the run was already completed)."""
        opened = await self.open(envelope, event)
        return None if opened is None else await self.execute(opened)

    async def _run_examples(self, run: OpenRun) -> ExperimentRunError | None:
        event = run.event
        # `working` bounds target calls (the experiment's concurrency); a finished example releases
        # it before its result is written, so the writer can gather bigger commits; `backlog`
        # bounds the examples started but not yet written.
        working = asyncio.Semaphore(event.concurrency)
        backlog = asyncio.Semaphore(event.concurrency + 2 * self._max_batch)
        in_flight: set[asyncio.Task[None]] = set()
        seen: set[int] = set()
        failure: ExperimentRunError | None = None
        judge = JudgeBinding(
            tenant_id=run.tenant_id,
            parameters=event.parameters,
            judge=self._judge,
            prompts=self._judge_prompts,
            cancel=run.stop,
        )

        def finished(task: asyncio.Task[None], slot: _Slot) -> None:
            in_flight.discard(task)
            slot.release()
            backlog.release()
            if not task.cancelled() and task.exception() is not None:
                run.stop.set()  # the writer failed: stop feeding it

        if event.example_count == 0:
            return None
        rows = self._source.iterate(run.tenant_id, event.dataset_id, event.upload_id)
        try:
            async for index, data in rows:
                if run.stop.is_set():
                    break
                if not 0 <= index < event.example_count:
                    raise ExperimentRunError(
                        DATASET_CHANGED,
                        f"row {index} is outside the pinned file's {event.example_count} rows",
                    )
                if index in seen:
                    continue
                seen.add(index)
                if index in run.state.results:
                    run.skipped += 1
                    continue
                await backlog.acquire()
                await working.acquire()
                if run.stop.is_set():
                    working.release()
                    backlog.release()
                    break
                slot = _Slot(working)
                task = asyncio.create_task(
                    self._example(run, judge, index, data, slot), name=f"example {index}"
                )
                in_flight.add(task)
                task.add_done_callback(lambda t, slot=slot: finished(t, slot))  # type: ignore[misc]
        except ExperimentRunError as exc:
            failure = exc
            run.stop.set()
        except BaseException:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        finally:
            close = getattr(rows, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # the writer gave up (or the run was closed elsewhere)
        if failure is None and run.cancel_reason is None:
            missing = event.example_count - len(run.state.results)
            if missing > 0:
                failure = ExperimentRunError(
                    DATASET_CHANGED,
                    f"the file has fewer rows than the pinned {event.example_count}: "
                    f"{missing} example(s) without a row",
                )
        return failure

    async def _complete(self, run: OpenRun, failure: ExperimentRunError | None) -> Outcome:
        event = run.event
        names = [e.name for e in run.evaluators]
        status: Outcome
        if run.cancel_reason is not None:
            status, error = "cancelled", run.cancel_reason
        elif failure is not None:
            status, error = "failed", RunError(code=failure.code, message=failure.message[:MAX_MESSAGE])
        else:
            status, error = "completed", None
        await run.writer.finish(
            lambda s: ExperimentRunCompleted(
                experiment_id=event.experiment_id,
                run_number=event.run_number,
                status=status,  # type: ignore[arg-type]
                summary=summarize(s.results.values(), names, event.example_count),
                error=error,
                completed_at=self._clock(),
            )
        )
        return status

    async def _example(
        self, run: OpenRun, judge: JudgeBinding, index: int, data: dict[str, Any], slot: _Slot
    ) -> None:
        event = run.event
        inputs = without_fields(data, expected_fields(run.evaluators, event.expected_output_field))
        run.executed += 1
        began = time.perf_counter()
        result = await self._call_target(run, inputs)
        wall_ms = (time.perf_counter() - began) * 1000
        if run.stop.is_set():
            return  # the run is stopping: what this example gave is not recorded
        scores: list[EvaluatorScore] = []
        cost = result.cost_usd
        if result.error is None:
            for spec in run.evaluators:
                score = score_sync(spec, result.output, data, event.expected_output_field)
                if score is None and isinstance(spec, LlmJudgeEvaluator):
                    score, judge_cost = await judge.grade(
                        spec,
                        inputs=inputs,
                        output=result.output,
                        expected=expected_text(data, event.expected_output_field),
                    )
                    if judge_cost is not None:
                        cost = (cost or Decimal(0)) + judge_cost
                if score is not None:
                    scores.append(score)
        if run.stop.is_set():
            return  # stopped while judging (a cut-short judge call is no verdict)
        scored = self._scored(run, index, result, scores, cost, wall_ms)
        slot.release()
        await run.writer.write(scored)

    async def _call_target(self, run: OpenRun, inputs: dict[str, Any]) -> TargetResult:
        event = run.event
        call = self._target.run(
            run.tenant_id, event.target.model_dump(mode="json"), inputs, dict(event.parameters), run.stop
        )
        try:
            if self._timeout is None:
                return await call
            return await asyncio.wait_for(call, self._timeout)
        except TimeoutError:
            return TargetResult(error=TargetError("example_timeout", f"no answer within {self._timeout}s"))
        except Exception as exc:  # noqa: BLE001 - a failing target fails the example, not the run
            log.warning("target raised", exc_info=True, extra={"fields": {"stream_id": run.stream_id}})
            return TargetResult(error=TargetError("target_error", f"{type(exc).__name__}: {exc}"))

    def _scored(
        self,
        run: OpenRun,
        index: int,
        result: TargetResult,
        scores: list[EvaluatorScore],
        cost: Decimal | None,
        wall_ms: float,
    ) -> ExperimentExampleScored:
        error = (
            RunError(
                code=result.error.code[:100] or "target_error", message=result.error.message[:MAX_MESSAGE]
            )
            if result.error
            else None
        )
        latency = result.latency_ms if result.latency_ms is not None and result.latency_ms >= 0 else wall_ms
        fields: dict[str, Any] = {
            "experiment_id": run.event.experiment_id,
            "run_number": run.event.run_number,
            "example_index": index,
            "run_id": result.run_id,
            "output": result.output,
            "scores": scores if error is None else [],
            "latency_ms": round(latency, 3),
            "tokens_in": max(0, result.tokens_in),
            "tokens_out": max(0, result.tokens_out),
            "cost_usd": usd(cost),
            "error": error,
        }
        try:
            return ExperimentExampleScored(**fields)
        except ValidationError as exc:
            problem = exc.errors()[0].get("msg", str(exc)) if exc.errors() else str(exc)
            return ExperimentExampleScored(
                **{
                    **fields,
                    "output": None,
                    "scores": [],
                    "error": RunError(code="output_not_storable", message=str(problem)[:MAX_MESSAGE]),
                }
            )


class _Slot:
    """One example's hold on the concurrency semaphore, released once."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


def _names_of(state: RunState) -> list[str]:
    names: list[str] = []
    for result in state.results.values():
        for score in result.scores:
            if score.evaluator not in names:
                names.append(score.evaluator)
    return names
