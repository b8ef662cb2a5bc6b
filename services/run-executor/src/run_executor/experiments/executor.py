"""The experiment runs of this process: accept requests, run them in the background, cancel
superseded ones, resume interrupted ones.

At-least-once without blocking the consumer for a whole run: `accept` (the Kafka handler's body)
stores the request, records `runs.ExperimentRunStarted` (through `ExperimentRunner.open`) and only
then starts the run as a background task and returns, so the offset is committed once the run is
durably accepted. A crash before that point redelivers the request; a crash after it leaves a run
stream that was started and not completed, which `resume_open_runs` (on start) finds by scanning
the event store and resumes from the stored request, skipping every example the stream already has
a result for. A redelivered or repeated request of a run that runs here, or that is completed, does
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from ailab_contracts import REGISTRY, EventEnvelope, EventRegistry
from ailab_contracts.events.experiments import ExperimentStarted
from ailab_contracts.events.runs import RunError, experiment_run_stream

from .ports import OpenRunScanner, RunRequestStore
from .runner import ExperimentRunner, OpenRun, Outcome, run_stream_of

log = logging.getLogger(__name__)

SUPERSEDED = "superseded"


@dataclass
class ActiveRun:
    run: OpenRun
    task: asyncio.Task[Outcome | None]


class ExperimentExecutor:
    def __init__(
        self,
        runner: ExperimentRunner,
        requests: RunRequestStore,
        scanner: OpenRunScanner,
        registry: EventRegistry = REGISTRY,
    ) -> None:
        self.runner = runner
        self._requests = requests
        self._scanner = scanner
        self._registry = registry
        self.active: dict[str, ActiveRun] = {}
        self._opening: set[str] = set()
        self._resume_task: asyncio.Task[int] | None = None
        self._stopped = False
        self.outcomes: dict[str, Outcome | None] = {}

    # --- the consumer's entry point --------------------------------------------------------------
    async def accept(self, envelope: EventEnvelope, event: ExperimentStarted) -> None:
        """Handle a `registry.ExperimentStarted`: durably accept the run, then run it in the
        background. Returns once `runs.ExperimentRunStarted` is in the event store."""
        if self._stopped:
            raise RuntimeError("the experiment executor is stopping; not accepting runs")
        stream_id = run_stream_of(envelope.tenant_id, event)
        if event.supersedes_run_number is not None and event.supersedes_run_number != event.run_number:
            await self.cancel_superseded(envelope, event)
        await self._requests.save(stream_id, envelope)
        await self._launch(stream_id, envelope, event)

    async def _launch(self, stream_id: str, envelope: EventEnvelope, event: ExperimentStarted) -> bool:
        if self._stopped or stream_id in self.active or stream_id in self._opening:
            return False  # already running here: a redelivery, or the resume scan found it too
        self._opening.add(stream_id)
        try:
            opened = await self.runner.open(envelope, event)
        finally:
            self._opening.discard(stream_id)
        if opened is None:
            return False  # completed before
        task = asyncio.create_task(self._execute(opened), name=f"experiment {stream_id}")
        self.active[stream_id] = ActiveRun(opened, task)
        return True

    async def _execute(self, run: OpenRun) -> Outcome | None:
        try:
            outcome = await self.runner.execute(run)
            self.outcomes[run.stream_id] = outcome
            log.info(
                "experiment run ended",
                extra={
                    "fields": {
                        "stream_id": run.stream_id,
                        "outcome": outcome,
                        "executed": run.executed,
                        "skipped": run.skipped,
                    }
                },
            )
            return outcome
        except asyncio.CancelledError:
            raise
        except Exception:
            # e.g. the event store is down: the stream stays open and the next start resumes it
            log.exception(
                "experiment run stopped without completing", extra={"fields": {"stream_id": run.stream_id}}
            )
            self.outcomes[run.stream_id] = None
            return None
        finally:
            self.active.pop(run.stream_id, None)

    # --- cancelling ------------------------------------------------------------------------------
    async def cancel_superseded(self, envelope: EventEnvelope, event: ExperimentStarted) -> bool:
        """Cancel run `supersedes_run_number` of the same experiment: signal it when it runs here
        (its task records `cancelled`), else record `cancelled` on its stream if it is open."""
        assert event.supersedes_run_number is not None
        old = experiment_run_stream(envelope.tenant_id, event.experiment_id, event.supersedes_run_number)
        reason = RunError(
            code=SUPERSEDED, message=f"superseded by run {event.run_number} (started with force)"
        )
        active = self.active.get(old)
        if active is not None:
            active.run.cancel(reason.code, reason.message)
            return True
        names: list[str] | None = None
        previous = await self._requests.get(old)
        if previous is not None:
            definition = self._registry.parse(previous.to_wire())[1]
            if isinstance(definition, ExperimentStarted):
                names = [e.name for e in definition.evaluators]
        return await self.runner.cancel_stream(
            envelope.tenant_id, event.experiment_id, event.supersedes_run_number, reason, envelope, names
        )

    def cancel(self, stream_id: str, code: str, message: str) -> bool:
        active = self.active.get(stream_id)
        if active is None:
            return False
        active.run.cancel(code, message)
        return True

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Resume open runs in the background (once per process)."""
        if self._resume_task is None and not self._stopped:
            self._resume_task = asyncio.create_task(self._resume_logged(), name="experiment resume")

    async def _resume_logged(self) -> int:
        try:
            return await self.resume_open_runs()
        except Exception:
            log.exception("resuming experiment runs failed")
            return 0

    async def resume_open_runs(self) -> int:
        """Start every run that was accepted but not completed and is not running here; returns how
        many were started."""
        resumed = 0
        for stream_id in await self._scanner.open_runs():
            if stream_id in self.active:
                continue
            envelope = await self._requests.get(stream_id)
            if envelope is None:
                log.error(
                    "open experiment run without its request; not resumed",
                    extra={"fields": {"stream_id": stream_id}},
                )
                continue
            _, event = self._registry.parse(envelope.to_wire())
            if not isinstance(event, ExperimentStarted):
                continue
            if await self._launch(stream_id, envelope, event):
                resumed += 1
                log.info("experiment run resumed", extra={"fields": {"stream_id": stream_id}})
        return resumed

    async def wait_idle(self, timeout_s: float | None = None) -> None:
        """Wait until no run is active (tests, graceful shutdown)."""
        if self._resume_task is not None:
            await asyncio.wait_for(asyncio.shield(self._resume_task), timeout_s)
        tasks = [a.task for a in self.active.values()]
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout_s)

    async def stop(self) -> None:
        """Stop every run of this process without completing it (they resume on the next start)."""
        self._stopped = True
        tasks = [a.task for a in self.active.values()]
        if self._resume_task is not None:
            tasks.append(self._resume_task)  # type: ignore[arg-type]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
