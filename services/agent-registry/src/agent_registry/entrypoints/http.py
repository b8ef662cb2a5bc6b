"""HTTP details shared by the routes: ETags, If-Match, error mapping, documented error responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ailab_runtime import preconditions
from ailab_runtime.errors import ErrorResponse, error_response
from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import InternalCaller

from ..domain.commands import Precondition
from ..domain.errors import (
    AgentArchived,
    InvalidFlowGraph,
    InvalidReference,
    InvalidValue,
    NotFound,
    PreconditionFailed,
    RegistryError,
)

_STATUS: dict[type[RegistryError], int] = {
    NotFound: 404,
    PreconditionFailed: 412,
    AgentArchived: 409,
    InvalidFlowGraph: 422,
    InvalidValue: 422,
    InvalidReference: 422,
}


def parse_if_match(value: str | None) -> Precondition | None:
    """The `If-Match` header (parsed by `ailab_runtime.preconditions`) as this service's precondition."""
    header = preconditions.parse_if_match(value)
    return None if header is None else Precondition(versions=header.versions, any_version=header.any_version)


def install_registry_error_handler(app: FastAPI) -> None:
    """Answer domain errors in the shared error shape: the core's with the status of the table above,
    a feature area's (prompts, tools, datasets, experiments) with the `status` its class declares."""

    @app.exception_handler(RegistryError)
    async def _registry_error(_: Request, exc: RegistryError) -> JSONResponse:
        status = _STATUS.get(type(exc)) or getattr(exc, "status", 400)
        return error_response(status, exc.code, exc.message, exc.details)


_UNAUTHORIZED = "Missing or invalid internal service credential (`unauthorized`)."
_ERROR_DESCRIPTIONS = {
    404: "No such entity in this tenant (`not_found`).",
    409: "Another request changed the entity first (`conflict`), the Idempotency-Key is in use, "
    "or the agent is archived (`agent_archived`).",
    412: "`If-Match` does not name the current version (`precondition_failed`).",
    422: "Invalid input (`validation_error`, `invalid_flow_graph`, `invalid_value`, `invalid_reference`, "
    "`idempotency_key_reused`).",
}


def documented_errors(descriptions: Mapping[int, str], *codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the given error codes, each described in the feature's own words;
    401 always comes first, since every route needs the internal token."""
    described = {401: _UNAUTHORIZED, **descriptions}
    return {code: {"model": ErrorResponse, "description": described[code]} for code in (401, *codes)}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of the core routes (projects, agents, agent versions)."""
    return documented_errors(_ERROR_DESCRIPTIONS, *codes)


ETAG_HEADER = {
    "ETag": {"description": '`"<version>"`; send it back in `If-Match`.', "schema": {"type": "string"}}
}
CREATED_HEADERS = {
    **ETAG_HEADER,
    "Location": {"description": "URL of the created resource.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request "
        "with the same Idempotency-Key.",
        "schema": {"type": "string"},
    },
}


async def once_per_idempotency_key(
    request: Request,
    caller: InternalCaller,
    tenant_id: str,
    key: str | None,
    body: BaseModel | Any,
    action: Callable[[], Awaitable[StoredResponse]],
) -> JSONResponse:
    """Run a POST once per Idempotency-Key (scoped to tenant, principal and path); a replay answers
    the stored response with `Idempotent-Replayed: true`. Every feature area's POSTs use this."""
    scope = f"{tenant_id}:{caller.principal_id}:POST {request.url.path}"
    fingerprint = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    (status, content, headers), replayed = await request.app.state.runtime.idempotency.run(
        scope, key, fingerprint, action
    )
    if replayed:
        headers = {**headers, "Idempotent-Replayed": "true"}
    return JSONResponse(status_code=status, content=content, headers=headers)


Out = TypeVar("Out")


def with_etag(response: Response, version: int, out: Out) -> Out:
    """Answer `out` with the entity's version as ETag (what a later `If-Match` sends back)."""
    response.headers["ETag"] = preconditions.etag(version)
    return out


def created(out: BaseModel, version: int, location: str) -> StoredResponse:
    """The 201 of a create, as stored for Idempotency-Key replays: body, ETag and Location."""
    return (
        201,
        out.model_dump(mode="json", by_alias=True),
        {"ETag": preconditions.etag(version), "Location": location},
    )


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    """One page of a cursor-paginated list (`Page[...]` in the OpenAPI document)."""
    return {"items": items, "next_cursor": next_cursor}
