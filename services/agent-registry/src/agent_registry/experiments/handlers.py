"""Use cases of experiments: commands (create, update, start) and queries (get, list, status, results).

Commands load state from the views, let `model` decide, check references through the
`ExperimentReferences` port and record on the experiment stream, whose optimistic concurrency
turns a concurrent edit or start into a 409 rather than a lost update or a duplicate run number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ailab_contracts.events.experiments import experiment_stream

from ..application.recording import record, record_and_fold
from ..domain.errors import NotFound
from . import model
from .commands import CreateExperiment, StartExperiment, UpdateExperiment
from .model import Experiment, Reference, RunStatus
from .ports import ExperimentFilter, ExperimentPorts, ExperimentViews


async def _record(
    ports: ExperimentPorts, state: Experiment | None, tenant_id: str, expected_version: int, event: BaseModel
) -> Experiment:
    experiment_id: str = getattr(event, "experiment_id")  # noqa: B009 - every event of the stream has it
    return await record_and_fold(
        ports.recorder,
        model.evolve_experiment,
        state,
        tenant_id=tenant_id,
        stream_id=experiment_stream(tenant_id, experiment_id),
        expected_version=expected_version,
        events=[event],
    )


async def require_references(ports: ExperimentPorts, tenant_id: str, refs: Sequence[Reference]) -> None:
    """Raise `invalid_reference` naming the first field whose entity does not exist in the tenant."""
    for ref in refs:
        if ref.kind == "agent_version":
            assert ref.version is not None
            found = await ports.references.agent_version_exists(tenant_id, ref.id, ref.version)
        elif ref.kind == "prompt_version":
            assert ref.version is not None
            found = await ports.references.prompt_version_exists(tenant_id, ref.id, ref.version)
        else:
            dataset = await ports.references.dataset(tenant_id, ref.id)
            found = dataset is not None and not dataset.deleted
        if not found:
            raise model.missing_reference(ref)


async def create_experiment(cmd: CreateExperiment, ports: ExperimentPorts) -> Experiment:
    event = model.decide_create(ports.new_id("exp"), cmd)
    await require_references(
        ports,
        cmd.tenant_id,
        model.references_of(
            event.target.model_dump(), event.dataset_id, [e.model_dump() for e in event.evaluators]
        ),
    )
    return await _record(ports, None, cmd.tenant_id, 0, event)


async def update_experiment(cmd: UpdateExperiment, ports: ExperimentPorts) -> Experiment:
    experiment = await ports.views.experiment(cmd.tenant_id, cmd.experiment_id)
    event = model.decide_update(experiment, cmd)
    assert experiment is not None
    if event is None:
        return experiment
    await require_references(
        ports,
        cmd.tenant_id,
        model.references_of(
            event.target.model_dump() if event.target else None,
            event.dataset_id,
            [e.model_dump() for e in event.evaluators] if event.evaluators else None,
        ),
    )
    return await _record(ports, experiment, cmd.tenant_id, experiment.version, event)


async def start_experiment(cmd: StartExperiment, ports: ExperimentPorts) -> RunStatus:
    """Records `registry.ExperimentStarted`; returns the new run's status (`pending`)."""
    experiment = await ports.views.experiment(cmd.tenant_id, cmd.experiment_id)
    latest = (
        await run_status(ports.views, cmd.tenant_id, experiment.id, experiment.last_run_number)
        if experiment is not None and experiment.last_run_number
        else None
    )
    live = model.check_startable(experiment, cmd, latest)
    await require_references(ports, cmd.tenant_id, model.references_of(live.target, None, live.evaluators))
    dataset = await ports.references.dataset(cmd.tenant_id, live.dataset_id)
    event = model.decide_start(live, cmd, latest, dataset)
    [(envelope, _)] = await record(
        ports.recorder,
        tenant_id=cmd.tenant_id,
        stream_id=experiment_stream(cmd.tenant_id, live.id),
        expected_version=live.version,
        events=[event],
    )
    request = model.run_request_of(cmd.tenant_id, event, model.EventMeta.of(envelope))
    return model.merge_run_status(live.id, request, None)


# --- queries -------------------------------------------------------------------------------------------


async def get_experiment(views: ExperimentViews, tenant_id: str, experiment_id: str) -> Experiment:
    experiment = await views.experiment(tenant_id, experiment_id)
    if experiment is None:
        raise NotFound("experiment", experiment_id)
    return experiment


async def list_experiments(
    views: ExperimentViews, tenant_id: str, flt: ExperimentFilter
) -> tuple[list[Experiment], str | None]:
    return await views.experiments(tenant_id, flt)


async def run_status(
    views: ExperimentViews, tenant_id: str, experiment_id: str, run_number: int | None
) -> RunStatus:
    """The merged status of one run (`not_started` for None)."""
    if run_number is None:
        return model.merge_run_status(experiment_id, None, None)
    request = await views.run_request(tenant_id, experiment_id, run_number)
    progress = await views.run_progress(tenant_id, experiment_id, run_number)
    scored, failed = await views.result_counts(tenant_id, experiment_id, run_number)
    return model.merge_run_status(experiment_id, request, progress, scored, failed)


async def experiment_status(
    views: ExperimentViews, tenant_id: str, experiment_id: str, run_number: int | None = None
) -> RunStatus:
    """Status of run `run_number`, or of the latest run."""
    experiment = await get_experiment(views, tenant_id, experiment_id)
    number = run_number if run_number is not None else experiment.last_run_number
    if number is not None and number > (experiment.last_run_number or 0):
        raise NotFound("experiment run", f"{experiment_id}:{number}")
    return await run_status(views, tenant_id, experiment_id, number)


async def experiment_results(
    views: ExperimentViews,
    tenant_id: str,
    experiment_id: str,
    run_number: int | None,
    limit: int,
    cursor: str | None,
) -> tuple[RunStatus, list[dict[str, Any]], str | None]:
    """The run's status and one page of its per-example results (empty before any start)."""
    status = await experiment_status(views, tenant_id, experiment_id, run_number)
    if status.run_number is None:
        return status, [], None
    items, next_cursor = await views.results(tenant_id, experiment_id, status.run_number, limit, cursor)
    return status, items, next_cursor
