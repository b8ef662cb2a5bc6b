"""Ports of the experiments use cases: its read models, the entities it refers to, the event recorder.
MongoDB adapters live in `mongo.py`; unit tests use the in-memory fakes in `memory.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ailab_runtime.ids import new_id

from ..application.ports import EventRecorder
from .model import DatasetRef, Experiment, RunProgress, RunRequest


@dataclass(frozen=True)
class ExperimentFilter:
    """One page of the experiment list: keyset cursor, size and the optional filters."""

    limit: int = 50
    cursor: str | None = None
    status: str | None = None
    tag: str | None = None
    dataset_id: str | None = None
    agent_id: str | None = None
    prompt_id: str | None = None


class ExperimentViews(Protocol):
    """Read models of experiments and their runs, always scoped by tenant."""

    async def experiment(self, tenant_id: str, experiment_id: str) -> Experiment | None: ...

    async def experiments(
        self, tenant_id: str, flt: ExperimentFilter
    ) -> tuple[list[Experiment], str | None]: ...

    async def run_request(self, tenant_id: str, experiment_id: str, run_number: int) -> RunRequest | None: ...

    async def run_progress(
        self, tenant_id: str, experiment_id: str, run_number: int
    ) -> RunProgress | None: ...

    async def result_counts(self, tenant_id: str, experiment_id: str, run_number: int) -> tuple[int, int]:
        """(scored, failed) examples reported for the run so far."""
        ...

    async def results(
        self, tenant_id: str, experiment_id: str, run_number: int, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of per-example results in `example_index` order."""
        ...


class ExperimentReferences(Protocol):
    """The entities an experiment names, as other parts of the registry publish them in their views."""

    async def agent_version_exists(self, tenant_id: str, agent_id: str, version: int) -> bool: ...

    async def prompt_version_exists(self, tenant_id: str, prompt_id: str, version: int) -> bool: ...

    async def dataset(self, tenant_id: str, dataset_id: str) -> DatasetRef | None: ...


@dataclass(frozen=True)
class ExperimentPorts:
    views: ExperimentViews
    references: ExperimentReferences
    recorder: EventRecorder
    new_id: Callable[[str], str] = new_id
