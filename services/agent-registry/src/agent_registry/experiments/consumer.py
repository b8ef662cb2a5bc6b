"""Consumer of the run-executor's experiment events (`ailab.runs.events`).

Exactly-once effect under at-least-once delivery, on a store that loses concurrent updates:
- `runs.ExperimentExampleScored` is inserted into the `experiment_results` ledger under
  `{experiment_id}:{run_number}:{example_index}`; a duplicate key means it is already applied.
- `runs.ExperimentRunStarted/Completed` update `experiment_run_progress`, whose only writer is this
  consumer (one partition per tenant, records handled one at a time), by compare-and-swap on
  `_rev`; `model.evolve_progress` orders them by the executor's stream_version, so a redelivered or
  late older event never moves a run's status backwards.
A report naming an experiment of another tenant (a producer bug) is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_contracts.events.runs import ExperimentExampleScored, ExperimentRunCompleted, ExperimentRunStarted
from ailab_runtime.consumer import Handler
from ailab_runtime.service import Runtime

from ..domain.model import EventMeta
from .model import evolve_progress
from .mongo import EXPERIMENTS, RESULTS, RUN_PROGRESS, progress_from_doc, progress_to_doc, result_key, run_key

log = logging.getLogger(__name__)

EVENT_TYPES = {"runs.ExperimentRunStarted", "runs.ExperimentExampleScored", "runs.ExperimentRunCompleted"}
CONSUMER_GROUP = "agent-registry.experiment-results"
_MAX_ATTEMPTS = 20


class ExperimentResultsConsumer:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._experiments = db[EXPERIMENTS]
        self._results = db[RESULTS]
        self._progress = db[RUN_PROGRESS]

    async def __call__(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if not isinstance(event, ExperimentExampleScored | ExperimentRunStarted | ExperimentRunCompleted):
            return
        if not await self._of_its_tenant(envelope, event.experiment_id):
            return
        if isinstance(event, ExperimentExampleScored):
            await self._record_result(envelope, event)
        else:
            await self._advance(envelope, event)

    async def _of_its_tenant(self, envelope: EventEnvelope, experiment_id: str) -> bool:
        """False for a report naming another tenant's experiment (a producer bug): it is dropped, so it
        can neither show up under that tenant nor take the result keys of the real run."""
        doc = await self._experiments.find_one({"_id": experiment_id}, {"tenant_id": 1})
        if doc is None or doc["tenant_id"] == envelope.tenant_id:
            return True  # an unknown experiment may just not be projected yet: keep the report
        log.error(
            "run event names an experiment of another tenant; dropped",
            extra={"fields": {"stream_id": envelope.stream_id, "event_id": str(envelope.event_id)}},
        )
        return False

    async def _record_result(self, envelope: EventEnvelope, event: ExperimentExampleScored) -> None:
        doc = {
            "_id": result_key(event.experiment_id, event.run_number, event.example_index),
            "tenant_id": envelope.tenant_id,
            "experiment_id": event.experiment_id,
            "run_number": event.run_number,
            "example_index": event.example_index,
            "run_id": event.run_id,
            "output": event.output,
            "scores": [s.model_dump(mode="json") for s in event.scores],
            "latency_ms": event.latency_ms,
            "tokens_in": event.tokens_in,
            "tokens_out": event.tokens_out,
            "cost_usd": event.cost_usd,
            "error": event.error.model_dump(mode="json") if event.error else None,
            "failed": event.error is not None,
            "scored_at": EventMeta.of(envelope).occurred_at,
            "event_id": str(envelope.event_id),
        }
        try:
            await self._results.insert_one(doc)
        except DuplicateKeyError:
            pass  # this example of this run is already recorded: the first report wins

    async def _advance(
        self, envelope: EventEnvelope, event: ExperimentRunStarted | ExperimentRunCompleted
    ) -> None:
        key = run_key(event.experiment_id, event.run_number)
        for _ in range(_MAX_ATTEMPTS):
            doc = await self._progress.find_one({"_id": key})
            if doc is not None and doc["tenant_id"] != envelope.tenant_id:
                log.error(
                    "run event of another tenant for an existing run; ignored",
                    extra={"fields": {"stream_id": envelope.stream_id, "event_id": str(envelope.event_id)}},
                )
                return
            state = progress_from_doc(doc) if doc is not None else None
            new_state = evolve_progress(state, envelope.tenant_id, event, envelope.stream_version)
            if new_state is None:
                return
            if doc is None:
                try:
                    await self._progress.insert_one(progress_to_doc(new_state, rev=1))
                    return
                except DuplicateKeyError:
                    continue
            result = await self._progress.replace_one(
                {"_id": key, "_rev": doc["_rev"]}, progress_to_doc(new_state, rev=doc["_rev"] + 1)
            )
            if result.matched_count:
                return
        raise RuntimeError(f"{RUN_PROGRESS}: could not apply {envelope.event_type} to {key} (too many races)")


def results_handler(runtime: Runtime) -> Handler:
    return ExperimentResultsConsumer(runtime.db)
