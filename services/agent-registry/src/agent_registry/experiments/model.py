"""Experiments: the definition aggregate, its runs, and how a run's status is told.

Three sources describe a run, each with a single writer:
- the experiment stream (`registry.ExperimentStarted`): the run was requested -> `RunRequest`,
  status `pending` (projected inline by the registry);
- the run-executor's `runs.ExperimentRunStarted/Completed` -> `RunProgress` (written by the one
  consumer, ordered by the executor's stream_version and never moving backwards);
- the `runs.ExperimentExampleScored` ledger -> counts of scored and failed examples.
`merge_run_status` combines them into what a caller sees. Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ValidationError

from ailab_contracts.events.experiments import (
    EVALUATOR_TYPES,
    ExperimentCreated,
    ExperimentStarted,
    ExperimentUpdated,
)
from ailab_contracts.events.runs import ExperimentRunCompleted, ExperimentRunStarted

from ..domain import lifecycle
from ..domain.errors import InvalidReference, NotFound
from ..domain.lifecycle import EventMeta, normalize_tags
from .commands import CreateExperiment, StartExperiment, UpdateExperiment
from .errors import DatasetEmpty, ExperimentArchived, ExperimentRunning, InvalidExperiment

TARGET_TYPES = ("agent_version", "prompt_version")
ACTIVE_RUN_STATUSES = ("pending", "running")
TERMINAL_RUN_STATUSES = ("completed", "failed", "cancelled")
RunStatusName = Literal["not_started", "pending", "running", "completed", "failed", "cancelled"]
_RANK = {"pending": 0, "running": 1, "completed": 2, "failed": 2, "cancelled": 2}

DEFINITION_FIELDS = (
    "target",
    "dataset_id",
    "evaluators",
    "parameters",
    "concurrency",
    "expected_output_field",
)
EXPERIMENT_FIELDS = ("name", "description", "tags", "metadata", "status", *DEFINITION_FIELDS)
DATASET_DELETED = "deleted"


def config_path(tenant_id: str, experiment_id: str) -> str:
    """Where the definition lives in the artifact layout."""
    return f"tenants/{tenant_id}/experiments/{experiment_id}/config.json"


def _ms(at: datetime) -> datetime:
    """UTC, truncated to the milliseconds MongoDB keeps (responses equal stored views)."""
    at = at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


# --- state ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    id: str
    tenant_id: str
    name: str
    description: str | None
    status: str
    tags: list[str]
    metadata: dict[str, Any]
    target: dict[str, Any]
    dataset_id: str
    evaluators: list[dict[str, Any]]
    parameters: dict[str, Any]
    concurrency: int
    expected_output_field: str
    last_run_number: int | None
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int  # stream version of the experiment stream (the ETag)


@dataclass(frozen=True)
class RunRequest:
    """A run as the registry recorded it when it was started (the frozen definition and data pin)."""

    tenant_id: str
    experiment_id: str
    run_number: int
    target: dict[str, Any]
    evaluators: list[dict[str, Any]]
    parameters: dict[str, Any]
    concurrency: int
    expected_output_field: str
    dataset_id: str
    upload_id: str
    content_sha256: str | None
    example_count: int
    requested_by: str
    requested_at: datetime
    supersedes_run_number: int | None
    version: int  # stream version of the ExperimentStarted event


@dataclass(frozen=True)
class RunProgress:
    """What the run-executor reported about a run (not the per-example results)."""

    tenant_id: str
    experiment_id: str
    run_number: int
    status: str  # running | completed | failed | cancelled
    started_at: datetime | None
    completed_at: datetime | None
    example_count: int | None
    summary: dict[str, Any] | None
    error: dict[str, Any] | None
    position: int  # executor stream_version of the event that set `status`


@dataclass(frozen=True)
class RunStatus:
    experiment_id: str
    run_number: int | None
    status: RunStatusName
    examples_total: int | None
    examples_scored: int
    examples_failed: int
    requested_at: datetime | None
    requested_by: str | None
    started_at: datetime | None
    completed_at: datetime | None
    summary: dict[str, Any] | None
    error: dict[str, Any] | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES


@dataclass(frozen=True)
class DatasetRef:
    """What an experiment needs to know about a dataset (from the datasets view)."""

    id: str
    status: str | None
    row_count: int | None
    upload_id: str | None
    content_sha256: str | None

    @property
    def deleted(self) -> bool:
        return self.status == DATASET_DELETED


@dataclass(frozen=True)
class Reference:
    """Another entity an experiment names; `field` says where, for the 422 `invalid_reference`."""

    field: str
    kind: Literal["agent_version", "prompt_version", "dataset"]
    id: str
    version: int | None = None

    @property
    def label(self) -> str:
        return f"{self.id}:v{self.version}" if self.version is not None else self.id


# --- evolving state from events -----------------------------------------------------------------------


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def evolve_experiment(
    state: Experiment | None, tenant_id: str, event: BaseModel, meta: EventMeta
) -> Experiment | None:
    if isinstance(event, ExperimentCreated):
        if state is not None:
            return state
        return Experiment(
            id=event.experiment_id,
            target=_dump(event.target),
            dataset_id=event.dataset_id,
            evaluators=_dump(list(event.evaluators)),
            parameters=dict(event.parameters),
            concurrency=event.concurrency,
            expected_output_field=event.expected_output_field,
            last_run_number=None,
            **lifecycle.new_entity_fields(event, tenant_id, meta),
        )
    if state is None:
        return None
    if isinstance(event, ExperimentUpdated):
        changes = {f: _dump(getattr(event, f)) for f in EXPERIMENT_FIELDS if getattr(event, f) is not None}
        return lifecycle.touched(state, meta, event.updated_by, **changes)
    if isinstance(event, ExperimentStarted):
        latest = max(state.last_run_number or 0, event.run_number)
        return replace(state, last_run_number=latest, version=meta.stream_version)
    return None


def run_request_of(tenant_id: str, event: ExperimentStarted, meta: EventMeta) -> RunRequest:
    return RunRequest(
        tenant_id=tenant_id,
        experiment_id=event.experiment_id,
        run_number=event.run_number,
        target=_dump(event.target),
        evaluators=_dump(list(event.evaluators)),
        parameters=dict(event.parameters),
        concurrency=event.concurrency,
        expected_output_field=event.expected_output_field,
        dataset_id=event.dataset_id,
        upload_id=event.upload_id,
        content_sha256=event.content_sha256,
        example_count=event.example_count,
        requested_by=event.requested_by,
        requested_at=meta.occurred_at,
        supersedes_run_number=event.supersedes_run_number,
        version=meta.stream_version,
    )


def evolve_progress(
    state: RunProgress | None, tenant_id: str, event: BaseModel, position: int
) -> RunProgress | None:
    """The run's progress after an executor event at `position` (its stream_version); None when
    nothing changes. The status only moves forward (running -> terminal); among terminal reports
    the later position wins; an older or repeated report only fills fields still missing."""
    if isinstance(event, ExperimentRunStarted):
        started = _ms(event.started_at)
        if state is None:
            return RunProgress(
                tenant_id=tenant_id,
                experiment_id=event.experiment_id,
                run_number=event.run_number,
                status="running",
                started_at=started,
                completed_at=None,
                example_count=event.example_count,
                summary=None,
                error=None,
                position=position,
            )
        filled = replace(
            state,
            started_at=state.started_at or started,
            example_count=state.example_count if state.example_count is not None else event.example_count,
        )
        return filled if filled != state else None
    if isinstance(event, ExperimentRunCompleted):
        if state is not None and _RANK[state.status] >= _RANK[event.status] and position <= state.position:
            return None
        return RunProgress(
            tenant_id=tenant_id,
            experiment_id=event.experiment_id,
            run_number=event.run_number,
            status=event.status,
            started_at=state.started_at if state else None,
            completed_at=_ms(event.completed_at),
            example_count=(
                state.example_count
                if state is not None and state.example_count is not None
                else event.summary.examples_total
            ),
            summary=event.summary.model_dump(mode="json"),
            error=event.error.model_dump(mode="json") if event.error else None,
            position=max(position, state.position if state else 0),
        )
    return None


def merge_run_status(
    experiment_id: str,
    run: RunRequest | None,
    progress: RunProgress | None,
    scored: int = 0,
    failed: int = 0,
) -> RunStatus:
    """What a caller sees of a run: the registry's request, the executor's reports and the result
    counts. `pending` until the executor reports anything; results without a start report mean
    it is running (events can arrive out of order)."""
    if run is None and progress is None:
        return RunStatus(experiment_id, None, "not_started", None, 0, 0, None, None, None, None, None, None)
    status: RunStatusName
    if progress is not None:
        status = cast(RunStatusName, progress.status)
    else:
        status = "running" if scored + failed > 0 else "pending"
    number = run.run_number if run is not None else cast(RunProgress, progress).run_number
    total: int | None = None
    if progress is not None and progress.summary is not None:
        total = progress.summary.get("examples_total")
    if total is None and progress is not None:
        total = progress.example_count
    if total is None and run is not None:
        total = run.example_count
    return RunStatus(
        experiment_id=experiment_id,
        run_number=number,
        status=status,
        examples_total=total,
        examples_scored=scored,
        examples_failed=failed,
        requested_at=run.requested_at if run else None,
        requested_by=run.requested_by if run else None,
        started_at=progress.started_at if progress else None,
        completed_at=progress.completed_at if progress else None,
        summary=progress.summary if progress else None,
        error=progress.error if progress else None,
    )


# --- validating definitions ---------------------------------------------------------------------------


def _loc(loc: Sequence[str | int]) -> list[str | int]:
    """A pydantic error location in the request body, without the union tag pydantic inserts."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] == "target" and parts[1] in TARGET_TYPES:
        del parts[1]
    if len(parts) > 2 and parts[0] == "evaluators" and parts[2] in EVALUATOR_TYPES:
        del parts[2]
    return ["body", *parts]


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": _loc(e["loc"]), "msg": e["msg"].removeprefix("Value error, "), "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def _validated(model: type[BaseModel], data: Mapping[str, Any]) -> Any:
    try:
        event = model.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidExperiment(_problems(exc)) from None
    evaluators = getattr(event, "evaluators", None) or []
    seen: dict[str, int] = {}
    duplicates = []
    for i, evaluator in enumerate(evaluators):
        if evaluator.name in seen:
            duplicates.append(
                {
                    "loc": ["body", "evaluators", i, "name"],
                    "msg": f"name {evaluator.name!r} is already used by evaluators[{seen[evaluator.name]}]",
                    "type": "duplicate_name",
                }
            )
        seen.setdefault(evaluator.name, i)
    if duplicates:
        raise InvalidExperiment(duplicates)
    return event


def _require_storable(value: Any, name: str) -> None:
    lifecycle.require_storable(value, ["body", name])


def references_of(
    target: Mapping[str, Any] | None,
    dataset_id: str | None,
    evaluators: Iterable[Mapping[str, Any]] | None,
) -> list[Reference]:
    """Every entity a (validated) definition names, each with the field naming it."""
    refs: list[Reference] = []
    if target is not None:
        if target["type"] == "agent_version":
            refs.append(Reference("target", "agent_version", target["agent_id"], target["version"]))
        else:
            refs.append(Reference("target", "prompt_version", target["prompt_id"], target["version"]))
    if dataset_id is not None:
        refs.append(Reference("dataset_id", "dataset", dataset_id))
    for i, evaluator in enumerate(evaluators or ()):
        config = evaluator.get("config") or {}
        if evaluator["type"] == "llm_judge" and config.get("prompt_id") is not None:
            refs.append(
                Reference(
                    f"evaluators[{i}].config.prompt_id",
                    "prompt_version",
                    config["prompt_id"],
                    config["prompt_version"],
                )
            )
    return refs


def missing_reference(ref: Reference) -> InvalidReference:
    kind = {"agent_version": "agent version", "prompt_version": "prompt version", "dataset": "dataset"}
    return InvalidReference(ref.field, kind[ref.kind], ref.label)


# --- deciding events from commands --------------------------------------------------------------------


def _require(experiment: Experiment | None, experiment_id: str) -> Experiment:
    if experiment is None:
        raise NotFound("experiment", experiment_id)
    return experiment


def decide_create(experiment_id: str, cmd: CreateExperiment) -> ExperimentCreated:
    """The new experiment, validated (references are checked by the caller: see `references_of`)."""
    event: ExperimentCreated = _validated(
        ExperimentCreated,
        {
            "experiment_id": experiment_id,
            "name": cmd.name,
            "description": cmd.description,
            "tags": normalize_tags(cmd.tags),
            "metadata": dict(cmd.metadata),
            "target": dict(cmd.target),
            "dataset_id": cmd.dataset_id,
            "evaluators": [dict(e) if isinstance(e, Mapping) else e for e in cmd.evaluators],
            "parameters": dict(cmd.parameters),
            "concurrency": cmd.concurrency,
            "expected_output_field": cmd.expected_output_field,
            "created_by": cmd.actor,
        },
    )
    _require_storable(event.metadata, "metadata")
    _require_storable(event.parameters, "parameters")
    return event


def decide_update(experiment: Experiment | None, cmd: UpdateExperiment) -> ExperimentUpdated | None:
    """Only the fields that differ from the current state; None when nothing would change."""
    live = _require(experiment, cmd.experiment_id)
    if cmd.precondition:
        cmd.precondition.check(live.version)
    unknown = set(cmd.changes) - set(EXPERIMENT_FIELDS)
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    requested = {k: v for k, v in cmd.changes.items() if v is not None}
    if "tags" in requested:
        requested["tags"] = normalize_tags(requested["tags"])
    candidate: ExperimentUpdated = _validated(
        ExperimentUpdated, {"experiment_id": live.id, "updated_by": cmd.actor, **requested}
    )
    changes = {
        name: getattr(candidate, name)
        for name in requested
        if _dump(getattr(candidate, name)) != getattr(live, name)
    }
    if not changes:
        return None
    if "metadata" in changes:
        _require_storable(changes["metadata"], "metadata")
    if "parameters" in changes:
        _require_storable(changes["parameters"], "parameters")
    return ExperimentUpdated(experiment_id=live.id, updated_by=cmd.actor, **changes)


def check_startable(
    experiment: Experiment | None, cmd: StartExperiment, latest: RunStatus | None
) -> Experiment:
    """The rules of a start that need no other entity: it exists, is not archived, and its last
    run is over (unless forced)."""
    live = _require(experiment, cmd.experiment_id)
    if live.status == "archived":
        raise ExperimentArchived(live.id)
    if latest is not None and latest.active and not cmd.force:
        assert latest.run_number is not None
        raise ExperimentRunning(live.id, latest.run_number, latest.status)
    return live


def decide_start(
    experiment: Experiment | None,
    cmd: StartExperiment,
    latest: RunStatus | None,
    dataset: DatasetRef | None,
) -> ExperimentStarted:
    """The next run, numbered after the last one, freezing the definition and pinning the dataset's
    current file. Two concurrent starts conflict on the experiment stream (409)."""
    live = check_startable(experiment, cmd, latest)
    if dataset is None or dataset.deleted:
        raise InvalidReference("dataset_id", "dataset", live.dataset_id)
    if not dataset.upload_id or not dataset.row_count:
        raise DatasetEmpty(dataset.id)
    supersedes = latest.run_number if latest is not None and latest.active else None
    started: ExperimentStarted = ExperimentStarted.model_validate(
        {
            "experiment_id": live.id,
            "run_number": (live.last_run_number or 0) + 1,
            "target": live.target,
            "evaluators": live.evaluators,
            "parameters": live.parameters,
            "concurrency": live.concurrency,
            "expected_output_field": live.expected_output_field,
            "dataset_id": dataset.id,
            "upload_id": dataset.upload_id,
            "content_sha256": dataset.content_sha256,
            "example_count": dataset.row_count,
            "requested_by": cmd.actor,
            "supersedes_run_number": supersedes,
        }
    )
    return started
