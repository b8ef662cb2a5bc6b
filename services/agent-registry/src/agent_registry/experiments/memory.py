"""In-memory fakes of the experiments ports, for unit tests of the use cases (no I/O).

`InMemoryExperiments` is the `EventRecorder` (with the event store's optimistic concurrency) and
the `ExperimentViews`, folding events with the same domain functions the projections and the
runs.* consumer use; `report(...)` plays the run-executor. `FakeReferences` holds the entities
experiments refer to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_contracts.events.experiments import ExperimentStarted
from ailab_contracts.events.runs import ExperimentExampleScored
from ailab_runtime.pagination import decode_cursor, encode_cursor

from ..adapters.memory import InMemoryEventStore
from ..domain.model import EventMeta
from .model import (
    DatasetRef,
    Experiment,
    RunProgress,
    RunRequest,
    evolve_experiment,
    evolve_progress,
    run_request_of,
)
from .ports import ExperimentFilter


class InMemoryExperiments(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self._experiments: dict[tuple[str, str], Experiment] = {}
        self._runs: dict[tuple[str, str, int], RunRequest] = {}
        self._progress: dict[tuple[str, str, int], RunProgress] = {}
        self._results: dict[tuple[str, str, int, int], dict[str, Any]] = {}

    # --- EventRecorder ---------------------------------------------------------------------------
    def _apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        tenant_id, meta = envelope.tenant_id, EventMeta.of(envelope)
        experiment_id: str = getattr(event, "experiment_id")  # noqa: B009
        key = (tenant_id, experiment_id)
        if (state := evolve_experiment(self._experiments.get(key), tenant_id, event, meta)) is not None:
            self._experiments[key] = state
        if isinstance(event, ExperimentStarted):
            self._runs.setdefault(
                (tenant_id, experiment_id, event.run_number), run_request_of(tenant_id, event, meta)
            )

    # --- the run-executor's reports, applied as the consumer applies them --------------------------
    def report(self, tenant_id: str, event: BaseModel, stream_version: int) -> None:
        experiment_id: str = getattr(event, "experiment_id")  # noqa: B009
        run_number: int = getattr(event, "run_number")  # noqa: B009
        key = (tenant_id, experiment_id, run_number)
        if isinstance(event, ExperimentExampleScored):
            self._results.setdefault(
                (*key, event.example_index),
                {**event.model_dump(mode="json"), "failed": event.error is not None},
            )
            return
        if (state := evolve_progress(self._progress.get(key), tenant_id, event, stream_version)) is not None:
            self._progress[key] = state

    # --- ExperimentViews -----------------------------------------------------------------------------
    async def experiment(self, tenant_id: str, experiment_id: str) -> Experiment | None:
        return self._experiments.get((tenant_id, experiment_id))

    async def experiments(self, tenant_id: str, flt: ExperimentFilter) -> tuple[list[Experiment], str | None]:
        def matches(e: Experiment) -> bool:
            return (
                (not flt.status or e.status == flt.status)
                and (not flt.tag or flt.tag in e.tags)
                and (not flt.dataset_id or e.dataset_id == flt.dataset_id)
                and (not flt.agent_id or e.target.get("agent_id") == flt.agent_id)
                and (not flt.prompt_id or e.target.get("prompt_id") == flt.prompt_id)
            )

        after = decode_cursor(flt.cursor)
        items = sorted(
            (
                e
                for (t, i), e in self._experiments.items()
                if t == tenant_id and matches(e) and (after is None or i > after)
            ),
            key=lambda e: e.id,
        )
        page = items[: flt.limit]
        return page, encode_cursor(page[-1].id) if len(items) > flt.limit else None

    async def run_request(self, tenant_id: str, experiment_id: str, run_number: int) -> RunRequest | None:
        return self._runs.get((tenant_id, experiment_id, run_number))

    async def run_progress(self, tenant_id: str, experiment_id: str, run_number: int) -> RunProgress | None:
        return self._progress.get((tenant_id, experiment_id, run_number))

    async def result_counts(self, tenant_id: str, experiment_id: str, run_number: int) -> tuple[int, int]:
        mine = [r for k, r in self._results.items() if k[:3] == (tenant_id, experiment_id, run_number)]
        failed = sum(1 for r in mine if r["failed"])
        return len(mine) - failed, failed

    async def results(
        self, tenant_id: str, experiment_id: str, run_number: int, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        after = decode_cursor(cursor)
        start = int(after) if after is not None else -1
        items = sorted(
            (
                r
                for k, r in self._results.items()
                if k[:3] == (tenant_id, experiment_id, run_number) and k[3] > start
            ),
            key=lambda r: r["example_index"],
        )
        page = items[:limit]
        return page, encode_cursor(str(page[-1]["example_index"])) if len(items) > limit else None


@dataclass
class FakeReferences:
    """The entities of other areas an experiment may name: (tenant, agent_id, version),
    (tenant, prompt_id, version) and datasets by (tenant, dataset_id)."""

    agent_versions: set[tuple[str, str, int]] = field(default_factory=set)
    prompt_versions: set[tuple[str, str, int]] = field(default_factory=set)
    datasets: dict[tuple[str, str], DatasetRef] = field(default_factory=dict)

    def add_dataset(
        self,
        tenant_id: str,
        dataset_id: str,
        *,
        rows: int | None = 3,
        upload_id: str | None = "upl_1",
        status: str = "active",
        sha: str | None = "ab" * 32,
    ) -> None:
        self.datasets[(tenant_id, dataset_id)] = DatasetRef(dataset_id, status, rows, upload_id, sha)

    async def agent_version_exists(self, tenant_id: str, agent_id: str, version: int) -> bool:
        return (tenant_id, agent_id, version) in self.agent_versions

    async def prompt_version_exists(self, tenant_id: str, prompt_id: str, version: int) -> bool:
        return (tenant_id, prompt_id, version) in self.prompt_versions

    async def dataset(self, tenant_id: str, dataset_id: str) -> DatasetRef | None:
        return self.datasets.get((tenant_id, dataset_id))
