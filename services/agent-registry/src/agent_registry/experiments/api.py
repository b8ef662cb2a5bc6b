"""HTTP API of experiments under `/v1/tenants/{tenant_id}/experiments` (forwarded by the gateway)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, Page
from ailab_runtime.service import Runtime

from ..adapters.runtime_recorder import RuntimeEventRecorder
from ..entrypoints import http
from ..entrypoints.params import Cursor, IdempotencyKey, IfMatch, Limit, StatusFilter, TagFilter, TenantId
from . import handlers
from .commands import CreateExperiment, StartExperiment, UpdateExperiment
from .mongo import MongoExperimentReferences, MongoExperimentViews
from .ports import ExperimentFilter, ExperimentPorts
from .schemas import ExperimentCreate, ExperimentOut, ExperimentResultsOut, ExperimentUpdate, RunStatusOut


def experiment_ports(request: Request) -> ExperimentPorts:
    ports: ExperimentPorts = request.app.state.experiment_ports
    return ports


Ports = Annotated[ExperimentPorts, Depends(experiment_ports)]
ExperimentId = Annotated[
    str, Path(min_length=1, max_length=128, description="Experiment id.", examples=["exp_0192f3a4b5c6d1e2f3"])
]
RunNumber = Annotated[
    int | None,
    Query(alias="run", ge=1, le=1_000_000_000, description="Run number (default: the latest run)."),
]

_ERRORS = {
    404: "No such experiment (or run) in this tenant (`not_found`).",
    409: "Another request changed the experiment first (`conflict`), the Idempotency-Key is in use "
    "(`idempotency_key_in_use`), the previous run is still pending or running (`experiment_running`), "
    "the dataset has no uploaded file (`dataset_empty`) or the experiment is archived "
    "(`experiment_archived`).",
    412: "`If-Match` does not name the current version (`precondition_failed`).",
    422: "Invalid input (`validation_error`, `invalid_experiment` naming the evaluator index and field, "
    "`invalid_reference` naming the field, `invalid_value`, `idempotency_key_reused`).",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return http.documented_errors(_ERRORS, *codes)


router = APIRouter(prefix="/v1/tenants/{tenant_id}/experiments", tags=["experiments"])


@router.get("", response_model=Page[ExperimentOut], summary="List experiments", responses=_errors(422))
async def list_experiments(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: StatusFilter = None,
    tag: TagFilter = None,
    dataset_id: Annotated[
        str | None, Query(max_length=128, description="Only experiments on this dataset.")
    ] = None,
    agent_id: Annotated[
        str | None, Query(max_length=128, description="Only experiments targeting this agent.")
    ] = None,
    prompt_id: Annotated[
        str | None, Query(max_length=128, description="Only experiments targeting this prompt.")
    ] = None,
) -> dict[str, Any]:
    """Experiments of the tenant, oldest first."""
    flt = ExperimentFilter(
        limit=limit,
        cursor=cursor,
        status=status,
        tag=tag,
        dataset_id=dataset_id,
        agent_id=agent_id,
        prompt_id=prompt_id,
    )
    items, next_cursor = await handlers.list_experiments(ports.views, tenant_id, flt)
    return http.page([ExperimentOut.of(e) for e in items], next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=ExperimentOut,
    summary="Create an experiment",
    responses={201: {"headers": http.CREATED_HEADERS}, **_errors(409, 422)},
)
async def create_experiment(
    tenant_id: TenantId,
    body: ExperimentCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Validates the evaluators and the references (target version, dataset, stored judge prompts)."""

    async def action() -> StoredResponse:
        experiment = await handlers.create_experiment(
            CreateExperiment(
                tenant_id=tenant_id,
                actor=caller.principal_id,
                name=body.name,
                description=body.description,
                tags=body.tags,
                metadata=body.metadata,
                target=body.target,
                dataset_id=body.dataset_id,
                evaluators=body.evaluators,
                parameters=body.parameters,
                concurrency=body.concurrency,
                expected_output_field=body.expected_output_field,
            ),
            ports,
        )
        return http.created(
            ExperimentOut.of(experiment), experiment.version, f"{request.url.path}/{experiment.id}"
        )

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@router.get(
    "/{experiment_id}",
    response_model=ExperimentOut,
    summary="Get an experiment",
    responses={200: {"headers": http.ETAG_HEADER}, **_errors(404, 422)},
)
async def get_experiment(
    tenant_id: TenantId, experiment_id: ExperimentId, caller: Caller, ports: Ports, response: Response
) -> ExperimentOut:
    experiment = await handlers.get_experiment(ports.views, tenant_id, experiment_id)
    return http.with_etag(response, experiment.version, ExperimentOut.of(experiment))


@router.put(
    "/{experiment_id}",
    response_model=ExperimentOut,
    summary="Update an experiment",
    responses={200: {"headers": http.ETAG_HEADER}, **_errors(404, 409, 412, 422)},
)
async def update_experiment(
    tenant_id: TenantId,
    experiment_id: ExperimentId,
    body: ExperimentUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> ExperimentOut:
    """Changes the given fields; with `If-Match` only if the experiment is still at that version.
    Runs already started keep the definition they froze."""
    experiment = await handlers.update_experiment(
        UpdateExperiment(
            tenant_id=tenant_id,
            experiment_id=experiment_id,
            actor=caller.principal_id,
            changes=body.model_dump(exclude_unset=True),
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, experiment.version, ExperimentOut.of(experiment))


@router.post(
    "/{experiment_id}/start",
    status_code=202,
    response_model=RunStatusOut,
    summary="Start a run of an experiment",
    responses={
        202: {
            "headers": {
                "Location": {"description": "URL of the run's status.", "schema": {"type": "string"}},
                "Idempotent-Replayed": http.CREATED_HEADERS["Idempotent-Replayed"],
            }
        },
        **_errors(404, 409, 422),
    },
)
async def start_experiment(
    tenant_id: TenantId,
    experiment_id: ExperimentId,
    caller: Caller,
    ports: Ports,
    request: Request,
    force: Annotated[
        bool, Query(description="Start even while the previous run is still pending or running.")
    ] = False,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Freezes the definition and pins the dataset's current file (`registry.ExperimentStarted`); the
    run-executor picks it up. Answers with the new run's status (`pending`)."""

    async def action() -> StoredResponse:
        status = await handlers.start_experiment(
            StartExperiment(
                tenant_id=tenant_id, experiment_id=experiment_id, actor=caller.principal_id, force=force
            ),
            ports,
        )
        location = request.url.path.removesuffix("/start") + f"/status?run={status.run_number}"
        return 202, RunStatusOut.of(status).model_dump(mode="json"), {"Location": location}

    return await http.once_per_idempotency_key(
        request, caller, tenant_id, idempotency_key, {"force": force}, action
    )


@router.get(
    "/{experiment_id}/status",
    response_model=RunStatusOut,
    summary="Status of the latest run (or of `?run=N`)",
    responses=_errors(404, 422),
)
async def experiment_status(
    tenant_id: TenantId, experiment_id: ExperimentId, caller: Caller, ports: Ports, run: RunNumber = None
) -> RunStatusOut:
    """`not_started` before the first start; `pending` until the run-executor reports; progress
    counts the examples reported so far."""
    status = await handlers.experiment_status(ports.views, tenant_id, experiment_id, run)
    return RunStatusOut.of(status)


@router.get(
    "/{experiment_id}/results",
    response_model=ExperimentResultsOut,
    summary="Per-example results of the latest run (or of `?run=N`)",
    responses=_errors(404, 422),
)
async def experiment_results(
    tenant_id: TenantId,
    experiment_id: ExperimentId,
    caller: Caller,
    ports: Ports,
    run: RunNumber = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Results in `example_index` order, each example once, with the summary once the run ended."""
    status, items, next_cursor = await handlers.experiment_results(
        ports.views, tenant_id, experiment_id, run, limit, cursor
    )
    return {
        "experiment_id": status.experiment_id,
        "run_number": status.run_number,
        "status": status.status,
        "examples_total": status.examples_total,
        "examples_scored": status.examples_scored,
        "examples_failed": status.examples_failed,
        "summary": status.summary,
        "items": items,
        "next_cursor": next_cursor,
    }


def install(app: FastAPI) -> None:
    """Wire the ports over the runtime (experiment rule errors are answered with the registry's)."""
    runtime: Runtime = app.state.runtime
    app.state.experiment_ports = ExperimentPorts(
        views=MongoExperimentViews(runtime.db),
        references=MongoExperimentReferences(runtime.db),
        recorder=RuntimeEventRecorder(runtime),
    )


ROUTERS = (router,)
