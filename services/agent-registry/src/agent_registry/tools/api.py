"""Tool routes under `/v1/tenants/{tenant_id}/tools` (the gateway forwards them verbatim)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from ailab_contracts.events.registry import EntityStatus
from ailab_contracts.events.tools import ToolKind
from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, Page

from ..entrypoints import http, params
from ..entrypoints.params import Cursor, IdempotencyKey, Limit, TenantId
from . import handlers
from .domain import CreateTool, DeleteTool, UpdateTool
from .ports import ToolFilter, ToolPorts
from .schemas import ToolCreate, ToolOut, ToolUpdate


def tool_ports(request: Request) -> ToolPorts:
    ports: ToolPorts = request.app.state.tool_ports
    return ports


Ports = Annotated[ToolPorts, Depends(tool_ports)]
ToolId = Annotated[str, Path(max_length=128, description="Tool id.", examples=["tol_0192f3a4b5c6d1e2f3"])]
IfMatch = Annotated[str | None, params.if_match_header("tool")]

_ERRORS = {
    404: "No such tool in this tenant (`not_found`).",
    409: "Another tool of the tenant has this name (`tool_name_taken`), another request changed the "
    "tool first "
    "(`conflict`), or the Idempotency-Key is in use.",
    412: "`If-Match` does not name the current version (`precondition_failed`).",
    422: "Invalid input (`validation_error`, `invalid_tool` with one entry per problem and its `loc`, "
    "`idempotency_key_reused`).",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return http.documented_errors(_ERRORS, *codes)


def _definition(body: ToolCreate | ToolUpdate) -> dict[str, Any]:
    """The fields the request set (explicit nulls included), as plain JSON."""
    return body.model_dump(mode="json", exclude_unset=True)


router = APIRouter(prefix="/v1/tenants/{tenant_id}/tools", tags=["tools"])


@router.get("", response_model=Page[ToolOut], summary="List tools", responses=errors(422))
async def list_tools(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[EntityStatus | None, params.status_query("tools")] = None,
    tag: Annotated[str | None, params.tag_query("tools")] = None,
    kind: Annotated[ToolKind | None, Query(description="Only tools of this kind.")] = None,
) -> dict[str, Any]:
    """Tools of the tenant, oldest first; deleted ones are never listed."""
    items, next_cursor = await handlers.list_tools(
        ports, tenant_id, ToolFilter(limit=limit, cursor=cursor, status=status, tag=tag, kind=kind)
    )
    return http.page([ToolOut.of(t) for t in items], next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=ToolOut,
    summary="Create a tool",
    responses={201: {"headers": http.CREATED_HEADERS}, **errors(409, 422)},
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
        return http.created(ToolOut.of(tool), tool.version, f"{request.url.path}/{tool.id}")

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@router.get(
    "/{tool_id}",
    response_model=ToolOut,
    summary="Get a tool",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 422)},
)
async def get_tool(
    tenant_id: TenantId, tool_id: ToolId, caller: Caller, ports: Ports, response: Response
) -> ToolOut:
    tool = await handlers.get_tool(ports, tenant_id, tool_id)
    return http.with_etag(response, tool.version, ToolOut.of(tool))


@router.put(
    "/{tool_id}",
    response_model=ToolOut,
    summary="Update a tool",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 409, 412, 422)},
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
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, tool.version, ToolOut.of(tool))


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
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return Response(status_code=204)
