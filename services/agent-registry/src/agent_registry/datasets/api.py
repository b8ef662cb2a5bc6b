"""HTTP routes of datasets, under the paths the gateway forwards (`/v1/tenants/{tenant_id}/datasets`).

Files travel as raw bodies in both directions and are streamed: an upload is read from the request
chunk by chunk, a download is written from the stored chunks; neither is ever held whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from ailab_contracts.events.registry import EntityStatus
from ailab_runtime.context import request_id_var
from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, Page

from ..application.ports import ListFilter
from ..entrypoints import http, params
from ..entrypoints.params import Cursor, IdempotencyKey, Limit, TenantId
from . import handlers, queries
from .model import (
    ARTIFACT_NAMES,
    MEDIA_TYPES,
    PLAN_UPLOAD_LIMITS,
    CreateDataset,
    DeleteDataset,
    UnsupportedFormat,
    UpdateDataset,
    UploadDatasetFile,
    UploadInterrupted,
    filename,
)
from .ports import DatasetPorts
from .schemas import DatasetCreate, DatasetExampleOut, DatasetOut, DatasetUpdate

PATH = "/v1/tenants/{tenant_id}/datasets"
TAG = "datasets"

# Content-Type of an upload -> format (`?format=` wins over it)
UPLOAD_MEDIA_TYPES = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/jsonlines": "jsonl",
    "text/csv": "csv",
}


def dataset_ports(request: Request) -> DatasetPorts:
    ports: DatasetPorts = request.app.state.dataset_ports
    return ports


Ports = Annotated[DatasetPorts, Depends(dataset_ports)]
DatasetId = Annotated[
    str, Path(max_length=128, description="Dataset id.", examples=["dst_0192f3a4b5c6d1e2f3"])
]
IfMatch = Annotated[str | None, params.if_match_header("dataset")]

_ERRORS = {
    404: "No such dataset (or file, or example) in this tenant (`not_found`).",
    409: "Another request changed the dataset first (`conflict`), the Idempotency-Key is in use, the "
    "dataset is archived (`dataset_archived`), or the file was replaced under a cursor "
    "(`dataset_file_replaced`).",
    412: "`If-Match` does not name the current version (`precondition_failed`).",
    413: "The file is larger than the tenant's plan allows (`payload_too_large`): "
    + ", ".join(f"{plan} {limit // 1_000_000} MB" for plan, limit in PLAN_UPLOAD_LIMITS.items())
    + ".",
    415: "The format is neither given by `?format=` nor by the Content-Type (`unsupported_media_type`).",
    422: "Invalid input (`validation_error`, `invalid_value`, `idempotency_key_reused`), or a row of the "
    'file cannot be read (`invalid_dataset_row`, details `{"line": <1-based line>, "error": "..."}`); '
    "nothing of a refused upload is kept.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return http.documented_errors(_ERRORS, *codes)


router = APIRouter(prefix=PATH, tags=[TAG])


# --- datasets -------------------------------------------------------------------------------------


@router.get("", response_model=Page[DatasetOut], summary="List datasets", responses=errors(422))
async def list_datasets(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[EntityStatus | None, params.status_query("datasets")] = None,
    tag: Annotated[str | None, params.tag_query("datasets")] = None,
) -> dict[str, Any]:
    """Datasets of the tenant, oldest first; deleted ones are never listed."""
    items, next_cursor = await queries.list_datasets(
        ports, tenant_id, ListFilter(limit=limit, cursor=cursor, status=status, tag=tag)
    )
    return http.page([DatasetOut.of(d) for d in items], next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    summary="Create a dataset",
    responses={201: {"headers": http.CREATED_HEADERS}, **errors(409, 422)},
)
async def create_dataset(
    tenant_id: TenantId,
    body: DatasetCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The dataset starts without a file; upload one with `POST .../upload`."""

    async def action() -> StoredResponse:
        dataset = await handlers.create_dataset(
            CreateDataset(
                tenant_id=tenant_id,
                actor=caller.principal_id,
                name=body.name,
                description=body.description,
                tags=body.tags,
                metadata=body.metadata,
            ),
            ports,
        )
        return http.created(DatasetOut.of(dataset), dataset.version, f"{request.url.path}/{dataset.id}")

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@router.get(
    "/{dataset_id}",
    response_model=DatasetOut,
    summary="Get a dataset",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 422)},
)
async def get_dataset(
    tenant_id: TenantId, dataset_id: DatasetId, caller: Caller, ports: Ports, response: Response
) -> DatasetOut:
    dataset = await queries.get_dataset(ports, tenant_id, dataset_id)
    return http.with_etag(response, dataset.version, DatasetOut.of(dataset))


@router.put(
    "/{dataset_id}",
    response_model=DatasetOut,
    summary="Update a dataset",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 409, 412, 422)},
)
async def update_dataset(
    tenant_id: TenantId,
    dataset_id: DatasetId,
    body: DatasetUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> DatasetOut:
    """Changes the given fields; with `If-Match` only if the dataset is still at that version."""
    dataset = await handlers.update_dataset(
        UpdateDataset(
            tenant_id=tenant_id,
            dataset_id=dataset_id,
            actor=caller.principal_id,
            changes=body.model_dump(exclude_unset=True),
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, dataset.version, DatasetOut.of(dataset))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    summary="Delete a dataset and its file",
    responses=errors(404, 409, 412, 422),
)
async def delete_dataset(
    tenant_id: TenantId,
    dataset_id: DatasetId,
    caller: Caller,
    ports: Ports,
    if_match: IfMatch = None,
) -> Response:
    """The dataset disappears from every read; its file and examples are deleted, and the storage it
    held is reported as a negative `storage_mb` usage."""
    deleted, upload_id = await handlers.delete_dataset(
        DeleteDataset(
            tenant_id=tenant_id,
            dataset_id=dataset_id,
            actor=caller.principal_id,
            request_id=request_id_var.get() or f"delete:{dataset_id}",
            at=ports.clock(),
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    background = (
        BackgroundTask(handlers.discard_upload, ports, tenant_id, deleted.id, upload_id)
        if upload_id
        else None
    )
    return Response(status_code=204, background=background)


# --- the file -------------------------------------------------------------------------------------


def upload_format(query_format: str | None, content_type: str | None) -> str:
    """`?format=` if given, else the format the Content-Type names."""
    if query_format:
        return query_format
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in UPLOAD_MEDIA_TYPES:
        raise UnsupportedFormat(content_type)
    return UPLOAD_MEDIA_TYPES[media]


def _declared_size(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise UploadInterrupted() from exc


_FILE_BODY = {
    "required": True,
    "description": "The raw file, streamed: JSONL (one JSON object per line) or CSV with a header row.",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
        "application/jsonl": {"schema": {"type": "string", "format": "binary"}},
        "text/csv": {"schema": {"type": "string", "format": "binary"}},
    },
}


@router.post(
    "/{dataset_id}/upload",
    response_model=DatasetOut,
    summary="Upload the dataset file (JSONL or CSV, streamed)",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 409, 412, 413, 415, 422)},
    openapi_extra={"requestBody": _FILE_BODY},
)
async def upload_dataset_file(
    tenant_id: TenantId,
    dataset_id: DatasetId,
    caller: Caller,
    ports: Ports,
    request: Request,
    response: Response,
    background_tasks: BackgroundTasks,
    query_format: Annotated[
        Literal["jsonl", "csv"] | None,
        Query(alias="format", description="File format; overrides the Content-Type."),
    ] = None,
    if_match: IfMatch = None,
) -> DatasetOut:
    """Replaces the dataset's file. The body is read as it arrives: hashed, counted against the plan's
    size limit (free 10 MB, pro 100 MB, enterprise 1 GB; 413 as soon as it is exceeded), stored and
    parsed row by row. Every row must be readable (422 `invalid_dataset_row` names the first line
    that is not); a refused upload leaves nothing behind and the previous file stays current.
    The response is the dataset with its new file (`row_count`, `content_sha256`, `schema`, ...)."""
    fmt = upload_format(query_format, request.headers.get("content-type"))
    dataset, replaced = await handlers.upload_file(
        UploadDatasetFile(
            tenant_id=tenant_id,
            dataset_id=dataset_id,
            actor=caller.principal_id,
            format=fmt,
            request_id=request_id_var.get() or f"upload:{dataset_id}",
            declared_size=_declared_size(request),
            precondition=http.parse_if_match(if_match),
        ),
        _body(request),
        ports,
    )
    if replaced:  # after the response: the old file is no longer read
        background_tasks.add_task(handlers.discard_upload, ports, tenant_id, dataset.id, replaced)
    return http.with_etag(response, dataset.version, DatasetOut.of(dataset))


def _etag_matches(header: str | None, tag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or tag in (t.strip().removeprefix("W/") for t in header.split(","))


@router.get(
    "/{dataset_id}/download",
    summary="Download the dataset file (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file exactly as uploaded.",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()
            },
            "headers": {
                "ETag": {"description": '`"<content_sha256>"`.', "schema": {"type": "string"}},
                "Content-Disposition": {
                    "description": '`attachment; filename="<name>.<jsonl|csv>"`.',
                    "schema": {"type": "string"},
                },
            },
        },
        304: {"description": "`If-None-Match` names the current file."},
        **errors(404, 422),
    },
)
async def download_dataset_file(
    tenant_id: TenantId,
    dataset_id: DatasetId,
    caller: Caller,
    ports: Ports,
    if_none_match: Annotated[
        str | None, Header(alias="If-None-Match", description="ETag of a copy you have.")
    ] = None,
) -> Response:
    """The current file, byte for byte, with its SHA-256 as ETag; 404 before the first upload."""
    dataset = await queries.get_dataset(ports, tenant_id, dataset_id)
    if dataset.content_sha256 and _etag_matches(if_none_match, f'"{dataset.content_sha256}"'):
        return Response(status_code=304, headers={"ETag": f'"{dataset.content_sha256}"'})
    dataset, chunks = await queries.open_file(ports, tenant_id, dataset_id)
    assert dataset.format is not None
    name = filename(dataset.name, dataset.format)
    original = f"{dataset.name}.{dataset.format}"
    headers = {
        "Content-Length": str(dataset.size_bytes),
        "Content-Disposition": f'attachment; filename="{name}"; '
        f"filename*=UTF-8''{quote(original, safe='')}",
        "ETag": f'"{dataset.content_sha256}"',
    }
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[dataset.format], headers=headers)


@router.get(
    "/{dataset_id}/examples",
    response_model=Page[DatasetExampleOut],
    summary="List examples of a dataset",
    responses=errors(404, 409, 422),
)
async def list_examples(
    tenant_id: TenantId,
    dataset_id: DatasetId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Rows of the current file in file order (empty before the first upload). A cursor belongs to one
    file: after a re-upload it gets 409 `dataset_file_replaced`."""
    items, next_cursor = await queries.list_examples(ports, tenant_id, dataset_id, cursor, limit)
    return http.page([DatasetExampleOut(index=i, upload_id=u, data=d) for i, u, d in items], next_cursor)


@router.get(
    "/{dataset_id}/examples/{index}",
    response_model=DatasetExampleOut,
    summary="Get one example",
    responses=errors(404, 422),
)
async def get_example(
    tenant_id: TenantId,
    dataset_id: DatasetId,
    caller: Caller,
    ports: Ports,
    index: Annotated[int, Path(ge=0, le=2**62, description="Row of the current file, from 0.", examples=[0])],
) -> DatasetExampleOut:
    i, upload_id, data = await queries.get_example(ports, tenant_id, dataset_id, index)
    return DatasetExampleOut(index=i, upload_id=upload_id, data=data)


@router.get(
    "/{dataset_id}/files/{name}",
    summary="Get a dataset artifact (schema.json)",
    response_model=None,
    responses={
        200: {
            "description": "`schema.json`: the inferred schema of the current file.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **errors(404, 422),
    },
)
async def get_dataset_file(
    tenant_id: TenantId,
    dataset_id: DatasetId,
    caller: Caller,
    ports: Ports,
    name: Annotated[
        str, Path(description="One of " + ", ".join(ARTIFACT_NAMES) + ".", examples=list(ARTIFACT_NAMES))
    ],
) -> JSONResponse:
    """`schema.json` at `tenants/{tenant}/datasets/{dataset}/`: `dataset_id`, `upload_id`, `format`,
    `row_count`, `fields` (name, types, nullable, required, example) and `truncated`."""
    return JSONResponse(content=await queries.get_file(ports, tenant_id, dataset_id, name))
