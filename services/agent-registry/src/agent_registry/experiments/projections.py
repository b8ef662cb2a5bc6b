"""Read models of experiments projected from the registry's own event store (inline, rebuildable):
`experiments` (the definition, `_version` guarded) and `experiment_runs` (one document per started
run, written once; a duplicate key means the run is already projected)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_contracts.events.experiments import ExperimentCreated, ExperimentStarted, ExperimentUpdated
from ailab_runtime.mongo_server import delete_matching
from ailab_runtime.projections import Projection

from ..domain.model import EventMeta
from ..projections.guarded import GuardedStateView
from .model import evolve_experiment, run_request_of
from .mongo import EXPERIMENT_RUNS, EXPERIMENTS, experiment_from_doc, experiment_to_doc, run_request_to_doc

Db = AsyncDatabase[dict[str, Any]]


def _experiment_key(event: BaseModel) -> str | None:
    if isinstance(event, ExperimentCreated | ExperimentUpdated | ExperimentStarted):
        return event.experiment_id
    return None


class ExperimentsProjection(GuardedStateView):
    def __init__(self, db: Db) -> None:
        super().__init__(
            db, EXPERIMENTS, _experiment_key, evolve_experiment, experiment_to_doc, experiment_from_doc
        )


class ExperimentRunsProjection:
    """The registry's side of each run: requested (status `pending`) with its frozen definition."""

    name = EXPERIMENT_RUNS

    def __init__(self, db: Db) -> None:
        self._col = db[EXPERIMENT_RUNS]

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if not isinstance(event, ExperimentStarted):
            return
        run = run_request_of(envelope.tenant_id, event, EventMeta.of(envelope))
        try:
            await self._col.insert_one(run_request_to_doc(run))
        except DuplicateKeyError:
            pass  # a run request never changes: already projected

    async def reset(self) -> None:
        await delete_matching(self._col, {})


def experiment_projections(db: Db) -> Sequence[Projection]:
    return [ExperimentsProjection(db), ExperimentRunsProjection(db)]
