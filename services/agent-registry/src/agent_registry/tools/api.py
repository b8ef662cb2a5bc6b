"""Tool routes under `/v1/tenants/{tenant_id}/tools` (the gateway forwards them verbatim)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from ailab_contracts.events.registry import EntityStatus
from ailab_contracts.events.tools import ToolKind
from ailab_runtime.errors import ErrorResponse
from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

from ..entrypoints.http import CREATED_HEADERS, ETAG_HEADER, etag, once_per_idempotency_key, parse_if_match
from . import handlers
from .domain import CreateTool, DeleteTool, UpdateTool
from .ports import ToolFilter, ToolPorts
from .schemas import ToolCreate, ToolOut, ToolUpdate


def tool_ports(request: Request) -> ToolPorts:
    ports: ToolPorts = request.app.state.tool_ports
    return ports


Ports = Annotated[ToolPorts, Depends(tool_ports)]
TenantId = Annotated[str, Path(min_length=1, max_length=128, description="Owning tenant.", examples=["demo"])]
ToolId = Annotated[str, Path(max_length=128, description="Tool id.", examples=["tol_0192f3a4b5c6d1e2f3"])]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='`"<version>"` from an ETag, or `*`: the write applies only if the tool is still '
        "at that version.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retrying with the same key and body returns the first response; another body gets 422.",
    ),
]

_ERRORS = {
    401: "Missing or invalid internal service credential (`unauthorized`).",
    404: "No such tool in this tenant (`not_found`).",
    409: "Another tool of the tenant has this name (`tool_name_taken`), another request changed the "
    "tool first "
    "(`conflict`), or the Idempotency-Key is in use.",
    412: "`If-Match` does not name the current version (`precondition_failed`).",
    422: "Invalid input (`validation_error`, `invalid_tool` with one entry per problem and its `loc`, "
    "`idempotency_key_reused`).",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": _ERRORS[code]} for code in (401, *codes)}


def _definition(body: ToolCreate | ToolUpdate) -> dict[str, Any]:
    """The fields the request set (explicit nulls included), as plain JSON."""
    return body.model_dump(mode="json", exclude_unset=True)


router = APIRouter(prefix="/v1/tenants/{tenant_id}/tools", tags=["tools"])


@router.get("", response_model=Page[ToolOut], summary="List tools", responses=errors(422))
async def list_tools(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    status: Annotated[EntityStatus | None, Query(description="Only tools with this status.")] = None,
    tag: Annotated[str | None, Query(max_length=64, description="Only tools carrying this tag.")] = None,
    kind: Annotated[ToolKind | None, Query(description="Only tools of this kind.")] = None,
) -> dict[str, Any]:
    """Tools of the tenant, oldest first; deleted ones are never listed."""
    items, next_cursor = await handlers.list_tools(
        ports, tenant_id, ToolFilter(limit=limit, cursor=cursor, status=status, tag=tag, kind=kind)
    )
    return {"items": [ToolOut.of(t) for t in items], "next_cursor": next_cursor}


@router.post(
    "",
    status_code=201,
    response_model=ToolOut,
    summary="Create a tool",
    responses={201: {"headers": CREATED_HEADERS}, **errors(409, 422)},
)
async def create_tool(
    tenant_id: TenantId,
    body: ToolCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Validates the whole definition (422 `invalid_tool` lists every problem with its `loc`) and
    claims the name (409 `tool_name_taken`)."""

    async def action() -> StoredResponse:
        tool = await handlers.create_tool(
            CreateTool(tenant_id=tenant_id, actor=caller.principal_id, definition=_definition(body)), ports
        )
        out = ToolOut.of(tool).model_dump(mode="json")
        return 201, out, {"ETag": etag(tool.version), "Location": f"{request.url.path}/{tool.id}"}

    return await once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@router.get(
    "/{tool_id}",
    response_model=ToolOut,
    summary="Get a tool",
    responses={200: {"headers": ETAG_HEADER}, **errors(404, 422)},
)
async def get_tool(
    tenant_id: TenantId, tool_id: ToolId, caller: Caller, ports: Ports, response: Response
) -> ToolOut:
    tool = await handlers.get_tool(ports, tenant_id, tool_id)
    response.headers["ETag"] = etag(tool.version)
    return ToolOut.of(tool)


@router.put(
    "/{tool_id}",
    response_model=ToolOut,
    summary="Update a tool",
    responses={200: {"headers": ETAG_HEADER}, **errors(404, 409, 412, 422)},
)
async def update_tool(
    tenant_id: TenantId,
    tool_id: ToolId,
    body: ToolUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> ToolOut:
    """Changes the given fields; with `If-Match` only if the tool is still at that version."""
    tool = await handlers.update_tool(
        UpdateTool(
            tenant_id=tenant_id,
            tool_id=tool_id,
            actor=caller.principal_id,
            changes=_definition(body),
            precondition=parse_if_match(if_match),
        ),
        ports,
    )
    response.headers["ETag"] = etag(tool.version)
    return ToolOut.of(tool)


@router.delete("/{tool_id}", status_code=204, summary="Delete a tool", responses=errors(404, 409, 412, 422))
async def delete_tool(
    tenant_id: TenantId, tool_id: ToolId, caller: Caller, ports: Ports, if_match: IfMatch = None
) -> Response:
    """The tool disappears from every read and its name is free again."""
    await handlers.delete_tool(
        DeleteTool(
            tenant_id=tenant_id,
            tool_id=tool_id,
            actor=caller.principal_id,
            precondition=parse_if_match(if_match),
        ),
        ports,
    )
    return Response(status_code=204)
