"""Internal HTTP API of runs, under the paths the public gateway forwards verbatim (after
authentication, the `runs:read`/`runs:write` permission and the tenant check). Every route needs
the internal token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ailab_contracts.events.runs import RunStatus
from ailab_runtime.context import request_id_var
from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from ailab_runtime.preconditions import etag
from ailab_runtime.service import Runtime
from ailab_runtime.tracing import current_trace_id

from ..application import handlers, queries
from ..application.handlers import RunPorts, StartRun
from ..application.ports import RunFilter
from ..application.progress import Subscription
from ..domain.model import Run
from .http import CREATED_HEADERS, ETAG_HEADER, errors, parse_if_match
from .schemas import LogPage, RunCreate, RunLogOut, RunOut, RunTrace, RunUpdate

EVENT_STREAM = "text/event-stream"


def run_ports(request: Request) -> RunPorts:
    runtime: Runtime = request.app.state.runtime
    ports: RunPorts = runtime.extras["runs"]
    return ports


Ports = Annotated[RunPorts, Depends(run_ports)]
TenantId = Annotated[str, Path(min_length=1, max_length=128, description="Owning tenant.", examples=["demo"])]
RunId = Annotated[str, Path(max_length=128, description="Run id.", examples=["run_0192f3a4b5c6d1e2f3"])]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description='`"<version>"` from an ETag, or `*`: apply only at that version.'),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retrying with the same key and body returns the first response (as JSON, also for a "
        "streamed start); another body gets 422.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]

router = APIRouter(prefix="/v1/tenants/{tenant_id}/runs", tags=["runs"])

_SSE_DESCRIPTION = (
    "With `stream: true` (or `Accept: text/event-stream`) the answer is a server-sent-event stream "
    "(status 201): `run.queued`, `run.started`, `node.started`, `text.delta` (pieces of model "
    "answers), `node.finished`, and last `run.finished`, whose data is the finished run. A client "
    "that disconnects does not cancel the run."
)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sse(event: str, data: Any, seq: int) -> bytes:
    if isinstance(data, Run):
        data = RunOut.of(data).model_dump(mode="json")
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {seq}\nevent: {event}\ndata: {body}\n\n".encode()


async def _event_stream(subscription: Subscription) -> AsyncIterator[bytes]:
    seq = 0
    async for event, data in subscription.events():
        if event == "keepalive":
            yield b": keep-alive\n\n"
            continue
        seq += 1
        yield _sse(event, data, seq)


@router.post(
    "",
    status_code=201,
    response_model=RunOut,
    summary="Start a run",
    description="Queues a run of the agent's version (default its latest) with `inputs`; it starts as soon "
    "as the tenant has a free slot (free 2, pro 10, enterprise 50 concurrent runs; up to twice as many "
    "wait `queued`, more get 429). " + _SSE_DESCRIPTION,
    responses={
        201: {
            "headers": CREATED_HEADERS,
            "content": {
                EVENT_STREAM: {"schema": {"type": "string"}, "example": "event: run.finished\ndata: {...}"}
            },
        },
        **errors(409, 422, 429, 503),
    },
)
async def start_run(
    tenant_id: TenantId,
    body: RunCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    runtime: Runtime = request.app.state.runtime
    streamed = body.stream or EVENT_STREAM in (request.headers.get("accept") or "")

    async def action() -> StoredResponse:
        run = await handlers.start_run(
            StartRun(
                tenant_id=tenant_id,
                actor=caller.principal_id,
                agent_id=body.agent_id,
                version=body.version,
                inputs=body.inputs,
                metadata=body.metadata,
                timeout_s=body.timeout_s,
                streamed=streamed,
                request_id=request_id_var.get(),
                trace_id=current_trace_id(),
            ),
            ports,
        )
        location = f"{request.url.path}/{run.id}"
        return 201, RunOut.of(run).model_dump(mode="json"), {"ETag": etag(run.version), "Location": location}

    scope = f"{tenant_id}:{caller.principal_id}:POST {request.url.path}"
    (status, content, headers), replayed = await runtime.idempotency.run(
        scope, idempotency_key, {**body.model_dump(mode="json"), "stream": streamed}, action
    )
    if replayed:
        return JSONResponse(
            status_code=status, content=content, headers={**headers, "Idempotent-Replayed": "true"}
        )
    subscription = ports.executor.hub.subscribe(content["id"]) if streamed else None
    if subscription is None:
        return JSONResponse(status_code=status, content=content, headers=headers)
    return StreamingResponse(
        _event_stream(subscription),
        status_code=status,
        media_type=EVENT_STREAM,
        headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "",
    response_model=Page[RunOut],
    summary="List runs",
    description="Runs of the tenant, newest first, with cursor pagination; deleted runs are never listed.",
    responses=errors(422),
)
async def list_runs(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    agent_id: Annotated[str | None, Query(max_length=128, description="Only runs of this agent.")] = None,
    status: Annotated[RunStatus | None, Query(description="Only runs with this status.")] = None,
    created_after: Annotated[
        datetime | None, Query(description="Queued after (ISO 8601; UTC if no offset).")
    ] = None,
    created_before: Annotated[datetime | None, Query(description="Queued before (ISO 8601).")] = None,
) -> dict[str, Any]:
    runs, next_cursor = await queries.list_runs(
        ports,
        tenant_id,
        RunFilter(
            limit=limit,
            cursor=cursor,
            agent_id=agent_id,
            status=status,
            created_after=_utc(created_after),
            created_before=_utc(created_before),
        ),
    )
    return {"items": [RunOut.of(r) for r in runs], "next_cursor": next_cursor}


@router.get(
    "/{run_id}",
    response_model=RunOut,
    summary="Get a run",
    responses={200: {"headers": ETAG_HEADER}, **errors(404, 422)},
)
async def get_run(
    tenant_id: TenantId, run_id: RunId, caller: Caller, ports: Ports, response: Response
) -> RunOut:
    run = await queries.get_run(ports, tenant_id, run_id)
    response.headers["ETag"] = etag(run.version)
    return RunOut.of(run)


@router.patch(
    "/{run_id}",
    response_model=RunOut,
    summary="Cancel a run",
    description='`{"status": "cancelled"}` stops a queued or running run: provider calls in flight are '
    "abandoned at once (the tokens they already used are still metered) and the run ends `cancelled`. "
    "A finished run gets 409 `run_already_finished`.",
    responses={200: {"headers": ETAG_HEADER}, **errors(404, 409, 412, 422)},
)
async def update_run(
    tenant_id: TenantId,
    run_id: RunId,
    body: RunUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> RunOut:
    run = await handlers.cancel_run(
        tenant_id, run_id, caller.principal_id, body.reason, parse_if_match(if_match), ports
    )
    response.headers["ETag"] = etag(run.version)
    return RunOut.of(run)


@router.delete(
    "/{run_id}",
    status_code=204,
    summary="Delete a finished run",
    description="Removes a finished run with its logs and spans from every read (its usage stays metered). "
    "A queued or running run gets 409 `run_not_finished`: cancel it first.",
    responses=errors(404, 409, 412, 422),
)
async def delete_run(
    tenant_id: TenantId, run_id: RunId, caller: Caller, ports: Ports, if_match: IfMatch = None
) -> Response:
    await handlers.delete_run(tenant_id, run_id, caller.principal_id, parse_if_match(if_match), ports)
    return Response(status_code=204)


@router.get(
    "/{run_id}/logs",
    response_model=LogPage,
    summary="Run logs",
    description="Log lines of the run in order (`ts`, `level`, `node_id`, `message`, `data`), paginated.",
    responses=errors(404, 422),
)
async def run_logs(
    tenant_id: TenantId,
    run_id: RunId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    level: Annotated[str | None, Query(max_length=16, description="Only lines of this level.")] = None,
) -> LogPage:
    docs, next_cursor = await queries.run_logs(ports, tenant_id, run_id, cursor, limit, level)
    return LogPage(items=[RunLogOut.of(d) for d in docs], next_cursor=next_cursor)


@router.get(
    "/{run_id}/traces",
    response_model=RunTrace,
    summary="Run span tree",
    description="The run's spans as a tree (OpenTelemetry-compatible trace and span ids).",
    responses=errors(404, 422),
)
async def run_traces(tenant_id: TenantId, run_id: RunId, caller: Caller, ports: Ports) -> dict[str, Any]:
    run, tree, count = await queries.run_traces(ports, tenant_id, run_id)
    return {"run_id": run.id, "trace_id": run.trace_id, "span_count": count, "spans": tree}


ROUTERS = (router,)
