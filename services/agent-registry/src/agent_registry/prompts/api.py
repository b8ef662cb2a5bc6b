"""Prompt routes under `/v1/tenants/{tenant_id}/prompts` (the gateway forwards them verbatim)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from ailab_contracts.events.registry import EntityStatus
from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, Page

from ..application.ports import ListFilter
from ..entrypoints import http, params
from ..entrypoints.params import Cursor, IdempotencyKey, Limit, TenantId
from . import handlers
from .domain import CreatePrompt, CreatePromptVersion, DeletePrompt, MoveLabel, RemoveLabel, UpdatePrompt
from .ports import PromptPorts
from .schemas import (
    LabelMove,
    PromptCreate,
    PromptDiffOut,
    PromptOut,
    PromptUpdate,
    PromptVersionCreate,
    PromptVersionOut,
    RenderOut,
    RenderRequest,
)


def prompt_ports(request: Request) -> PromptPorts:
    ports: PromptPorts = request.app.state.prompt_ports
    return ports


Ports = Annotated[PromptPorts, Depends(prompt_ports)]
PromptId = Annotated[str, Path(max_length=128, description="Prompt id.", examples=["pmt_0192f3a4b5c6d1e2f3"])]
_VERSION_REF = r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,39})$"
VersionRef = Annotated[
    str,
    Path(
        pattern=_VERSION_REF,
        description="A version number (`1`, `2` ...), a label (`production`) or `latest`.",
        examples=["2", "production", "latest"],
    ),
]
Label = Annotated[
    str, Path(max_length=64, description="Label name (`^[a-z][a-z0-9_-]{0,39}$`).", examples=["production"])
]
IfMatch = Annotated[str | None, params.if_match_header("prompt", etag_source="the prompt's ETag")]

_ERRORS = {
    404: "No such prompt, version or label in this tenant (`not_found`).",
    409: "Another request changed the prompt first (`conflict`), the Idempotency-Key is in use, "
    "or the prompt is archived (`prompt_archived`).",
    412: "`If-Match` does not name the prompt's current version (`precondition_failed`).",
    422: "Invalid input (`validation_error`, `invalid_prompt`, `invalid_variables`, `invalid_label`, "
    "`invalid_value`, `invalid_reference`, `idempotency_key_reused`); `details` names each problem.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return http.documented_errors(_ERRORS, *codes)


router = APIRouter(prefix="/v1/tenants/{tenant_id}/prompts", tags=["prompts"])
VERSIONS = ["prompt-versions"]


# --- prompts --------------------------------------------------------------------------------------


@router.get("", response_model=Page[PromptOut], summary="List prompts", responses=errors(422))
async def list_prompts(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[EntityStatus | None, params.status_query("prompts")] = None,
    tag: Annotated[str | None, params.tag_query("prompts")] = None,
) -> dict[str, Any]:
    """Prompts of the tenant, oldest first; deleted ones are never listed."""
    items, next_cursor = await handlers.list_prompts(
        ports, tenant_id, ListFilter(limit=limit, cursor=cursor, status=status, tag=tag)
    )
    return http.page([PromptOut.of(p) for p in items], next_cursor)


@router.post(
    "",
    status_code=201,
    response_model=PromptOut,
    summary="Create a prompt",
    responses={201: {"headers": http.CREATED_HEADERS}, **errors(409, 422)},
)
async def create_prompt(
    tenant_id: TenantId,
    body: PromptCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> StoredResponse:
        prompt = await handlers.create_prompt(
            CreatePrompt(
                tenant_id=tenant_id,
                actor=caller.principal_id,
                name=body.name,
                description=body.description,
                tags=body.tags,
                metadata=body.metadata,
            ),
            ports,
        )
        return http.created(PromptOut.of(prompt), prompt.version, f"{request.url.path}/{prompt.id}")

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@router.get(
    "/{prompt_id}",
    response_model=PromptOut,
    summary="Get a prompt",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 422)},
)
async def get_prompt(
    tenant_id: TenantId, prompt_id: PromptId, caller: Caller, ports: Ports, response: Response
) -> PromptOut:
    prompt = await handlers.get_prompt(ports, tenant_id, prompt_id)
    return http.with_etag(response, prompt.version, PromptOut.of(prompt))


@router.put(
    "/{prompt_id}",
    response_model=PromptOut,
    summary="Update a prompt",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 409, 412, 422)},
)
async def update_prompt(
    tenant_id: TenantId,
    prompt_id: PromptId,
    body: PromptUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> PromptOut:
    """Changes the given fields; with `If-Match` only if the prompt is still at that version."""
    prompt = await handlers.update_prompt(
        UpdatePrompt(
            tenant_id=tenant_id,
            prompt_id=prompt_id,
            actor=caller.principal_id,
            changes=body.model_dump(exclude_unset=True),
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, prompt.version, PromptOut.of(prompt))


@router.delete(
    "/{prompt_id}", status_code=204, summary="Delete a prompt", responses=errors(404, 409, 412, 422)
)
async def delete_prompt(
    tenant_id: TenantId, prompt_id: PromptId, caller: Caller, ports: Ports, if_match: IfMatch = None
) -> Response:
    """The prompt, its versions and labels disappear from every read (stored versions are marked
    `deprecated` for the features that reference them)."""
    await handlers.delete_prompt(
        DeletePrompt(
            tenant_id=tenant_id,
            prompt_id=prompt_id,
            actor=caller.principal_id,
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return Response(status_code=204)


# --- versions -------------------------------------------------------------------------------------


@router.get(
    "/{prompt_id}/versions",
    response_model=Page[PromptVersionOut],
    tags=VERSIONS,
    summary="List versions of a prompt",
    responses=errors(404, 422),
)
async def list_prompt_versions(
    tenant_id: TenantId,
    prompt_id: PromptId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Versions in ascending order of their number."""
    prompt, items, next_cursor = await handlers.list_prompt_versions(
        ports, tenant_id, prompt_id, limit, cursor
    )
    return http.page([PromptVersionOut.of(v, prompt, handlers.warnings_of(v)) for v in items], next_cursor)


@router.post(
    "/{prompt_id}/versions",
    status_code=201,
    response_model=PromptVersionOut,
    tags=VERSIONS,
    summary="Create a prompt version",
    responses={201: {"headers": http.CREATED_HEADERS}, **errors(404, 409, 422)},
)
async def create_prompt_version(
    tenant_id: TenantId,
    prompt_id: PromptId,
    body: PromptVersionCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Checks the template against the declared variables (422 `invalid_prompt` lists every
    problem: malformed or undeclared placeholders, bad names, defaults of the wrong type; unused
    variables come back as `warnings`), numbers the version after the latest and moves `labels`
    to it, all in one commit. The ETag is the prompt's new version."""

    async def action() -> StoredResponse:
        new = await handlers.create_prompt_version(
            CreatePromptVersion(
                tenant_id=tenant_id,
                prompt_id=prompt_id,
                actor=caller.principal_id,
                template=body.template,
                messages=[m.model_dump() for m in body.messages] if body.messages is not None else None,
                variables=[v.model_dump() for v in body.variables],
                model_params=body.model_params,
                tags=body.tags,
                changelog=body.changelog,
                labels=body.labels,
            ),
            ports,
        )
        out = PromptVersionOut.of(new.version, new.prompt, new.warnings)
        return http.created(out, new.prompt.version, f"{request.url.path}/{new.version.number}")

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@router.get(
    "/{prompt_id}/versions/{version}",
    response_model=PromptVersionOut,
    tags=VERSIONS,
    summary="Get a prompt version",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 422)},
)
async def get_prompt_version(
    tenant_id: TenantId,
    prompt_id: PromptId,
    version: VersionRef,
    caller: Caller,
    ports: Ports,
    response: Response,
) -> PromptVersionOut:
    """By number, label or `latest`; everything the version stores (its artifact) is in the body.
    The ETag is the prompt's version, since the labels shown move with it."""
    prompt, found = await handlers.get_prompt_version(ports, tenant_id, prompt_id, version)
    return http.with_etag(
        response, prompt.version, PromptVersionOut.of(found, prompt, handlers.warnings_of(found))
    )


@router.post(
    "/{prompt_id}/versions/{version}/render",
    response_model=RenderOut,
    tags=VERSIONS,
    summary="Render a prompt version",
    responses=errors(404, 422),
)
async def render_prompt_version(
    tenant_id: TenantId,
    prompt_id: PromptId,
    version: VersionRef,
    body: RenderRequest,
    caller: Caller,
    ports: Ports,
) -> dict[str, Any]:
    """Substitutes the variables (defaults fill omitted ones). 422 `invalid_variables` when a
    required variable has no value, an undeclared one is given or a value has the wrong type:
    `details` is `{"missing": [...], "undeclared": [...], "type_errors": [{name, expected, got}]}`.
    Records nothing."""
    result = await handlers.render_prompt_version(ports, tenant_id, prompt_id, version, body.variables)
    return {
        "prompt_id": result.prompt.id,
        "version": result.version.number,
        "rendered": result.rendered,
        "variables_used": result.variables_used,
        "model_params": result.version.model_params,
    }


@router.get(
    "/{prompt_id}/diff",
    response_model=PromptDiffOut,
    tags=VERSIONS,
    summary="Diff two prompt versions",
    responses=errors(404, 422),
)
async def diff_prompt_versions(
    tenant_id: TenantId,
    prompt_id: PromptId,
    caller: Caller,
    ports: Ports,
    from_ref: Annotated[
        str, Query(alias="from", pattern=_VERSION_REF, description="Older side: number, label or `latest`.")
    ],
    to_ref: Annotated[
        str, Query(alias="to", pattern=_VERSION_REF, description="Newer side: number, label or `latest`.")
    ],
) -> dict[str, Any]:
    """A unified diff of the text and what changed in the variables and model parameters."""
    result = await handlers.diff_prompt_versions(ports, tenant_id, prompt_id, from_ref, to_ref)
    return {
        "prompt_id": result.prompt.id,
        "from": {"ref": from_ref, "version": result.before.number},
        "to": {"ref": to_ref, "version": result.after.number},
        **result.changes,
    }


# --- labels ---------------------------------------------------------------------------------------


@router.put(
    "/{prompt_id}/labels/{label}",
    response_model=PromptOut,
    tags=VERSIONS,
    summary="Point a label at a version",
    responses={200: {"headers": http.ETAG_HEADER}, **errors(404, 409, 412, 422)},
)
async def move_label(
    tenant_id: TenantId,
    prompt_id: PromptId,
    label: Label,
    body: LabelMove,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> PromptOut:
    """Creates or moves the label (event `registry.PromptLabelMoved`); a label already there is
    left alone. `latest` is implicit and cannot be set."""
    prompt = await handlers.move_label(
        MoveLabel(
            tenant_id=tenant_id,
            prompt_id=prompt_id,
            label=label,
            version=body.version,
            actor=caller.principal_id,
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, prompt.version, PromptOut.of(prompt))


@router.delete(
    "/{prompt_id}/labels/{label}",
    status_code=204,
    tags=VERSIONS,
    summary="Remove a label",
    responses=errors(404, 409, 412, 422),
)
async def remove_label(
    tenant_id: TenantId,
    prompt_id: PromptId,
    label: Label,
    caller: Caller,
    ports: Ports,
    if_match: IfMatch = None,
) -> Response:
    """Event `registry.PromptLabelRemoved`; 404 when the label is not set."""
    await handlers.remove_label(
        RemoveLabel(
            tenant_id=tenant_id,
            prompt_id=prompt_id,
            label=label,
            actor=caller.principal_id,
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return Response(status_code=204)
