"""Internal HTTP API of the registry, under the paths the public gateway exposes (it forwards them
verbatim after authentication, role and tenant checks). Every route requires the internal token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from ailab_contracts.events.registry import VersionStatus
from ailab_runtime.idempotency import StoredResponse
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, Page

from ..application import handlers, queries
from ..application.ports import ListFilter, RegistryPorts
from ..domain import commands
from ..domain.model import ARTIFACT_NAMES
from . import http
from .params import Cursor, IdempotencyKey, IfMatch, Limit, StatusFilter, TagFilter, TenantId
from .schemas import (
    AgentCreate,
    AgentOut,
    AgentUpdate,
    AgentVersionCreate,
    AgentVersionOut,
    AgentVersionUpdate,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
)


def registry_ports(request: Request) -> RegistryPorts:
    ports: RegistryPorts = request.app.state.registry_ports
    return ports


Ports = Annotated[RegistryPorts, Depends(registry_ports)]
ProjectId = Annotated[
    str, Path(max_length=128, description="Project id.", examples=["prj_0192f3a4b5c6d1e2f3"])
]
AgentId = Annotated[str, Path(max_length=128, description="Agent id.", examples=["agt_0192f3a4b5c6d1e2f3"])]
VersionNumber = Annotated[int, Path(ge=1, le=1_000_000_000, description="Version number.", examples=[1])]

projects_router = APIRouter(prefix="/v1/tenants/{tenant_id}/projects", tags=["projects"])
agents_router = APIRouter(prefix="/v1/tenants/{tenant_id}/agents", tags=["agents"])
versions_router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/agents/{agent_id}/versions", tags=["agent-versions"]
)


# --- projects -------------------------------------------------------------------------------------


@projects_router.get("", response_model=Page[ProjectOut], summary="List projects", responses=http.errors(422))
async def list_projects(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: StatusFilter = None,
    tag: TagFilter = None,
) -> dict[str, Any]:
    """Projects of the tenant, oldest first; deleted ones are never listed."""
    items, next_cursor = await queries.list_projects(
        ports.views, tenant_id, ListFilter(limit=limit, cursor=cursor, status=status, tag=tag)
    )
    return http.page([ProjectOut.of(p) for p in items], next_cursor)


@projects_router.post(
    "",
    status_code=201,
    response_model=ProjectOut,
    summary="Create a project",
    responses={201: {"headers": http.CREATED_HEADERS}, **http.errors(409, 422)},
)
async def create_project(
    tenant_id: TenantId,
    body: ProjectCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> StoredResponse:
        project = await handlers.create_project(
            commands.CreateProject(
                tenant_id=tenant_id,
                actor=caller.principal_id,
                name=body.name,
                description=body.description,
                tags=body.tags,
                metadata=body.metadata,
            ),
            ports,
        )
        return http.created(ProjectOut.of(project), project.version, f"{request.url.path}/{project.id}")

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@projects_router.get(
    "/{project_id}",
    response_model=ProjectOut,
    summary="Get a project",
    responses={200: {"headers": http.ETAG_HEADER}, **http.errors(404, 422)},
)
async def get_project(
    tenant_id: TenantId, project_id: ProjectId, caller: Caller, ports: Ports, response: Response
) -> ProjectOut:
    project = await queries.get_project(ports.views, tenant_id, project_id)
    return http.with_etag(response, project.version, ProjectOut.of(project))


@projects_router.put(
    "/{project_id}",
    response_model=ProjectOut,
    summary="Update a project",
    responses={200: {"headers": http.ETAG_HEADER}, **http.errors(404, 409, 412, 422)},
)
async def update_project(
    tenant_id: TenantId,
    project_id: ProjectId,
    body: ProjectUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> ProjectOut:
    """Changes the given fields; with `If-Match` only if the project is still at that version."""
    project = await handlers.update_project(
        commands.UpdateProject(
            tenant_id=tenant_id,
            project_id=project_id,
            actor=caller.principal_id,
            changes=body.model_dump(exclude_unset=True),
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, project.version, ProjectOut.of(project))


@projects_router.delete(
    "/{project_id}", status_code=204, summary="Delete a project", responses=http.errors(404, 409, 412, 422)
)
async def delete_project(
    tenant_id: TenantId,
    project_id: ProjectId,
    caller: Caller,
    ports: Ports,
    if_match: IfMatch = None,
) -> Response:
    """The project disappears from every read; its agents keep their `project_id`."""
    await handlers.delete_project(
        commands.DeleteProject(
            tenant_id=tenant_id,
            project_id=project_id,
            actor=caller.principal_id,
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return Response(status_code=204)


# --- agents ---------------------------------------------------------------------------------------


@agents_router.get("", response_model=Page[AgentOut], summary="List agents", responses=http.errors(422))
async def list_agents(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: StatusFilter = None,
    tag: TagFilter = None,
    project_id: Annotated[
        str | None, Query(max_length=128, description="Only agents of this project.")
    ] = None,
) -> dict[str, Any]:
    """Agents of the tenant, oldest first; deleted ones are never listed."""
    items, next_cursor = await queries.list_agents(
        ports.views,
        tenant_id,
        ListFilter(limit=limit, cursor=cursor, status=status, tag=tag, project_id=project_id),
    )
    return http.page([AgentOut.of(a) for a in items], next_cursor)


@agents_router.post(
    "",
    status_code=201,
    response_model=AgentOut,
    summary="Create an agent",
    responses={201: {"headers": http.CREATED_HEADERS}, **http.errors(409, 422)},
)
async def create_agent(
    tenant_id: TenantId,
    body: AgentCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    async def action() -> StoredResponse:
        agent = await handlers.create_agent(
            commands.CreateAgent(
                tenant_id=tenant_id,
                actor=caller.principal_id,
                name=body.name,
                project_id=body.project_id,
                description=body.description,
                type=body.type,
                tags=body.tags,
                metadata=body.metadata,
            ),
            ports,
        )
        return http.created(AgentOut.of(agent), agent.version, f"{request.url.path}/{agent.id}")

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@agents_router.get(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Get an agent",
    responses={200: {"headers": http.ETAG_HEADER}, **http.errors(404, 422)},
)
async def get_agent(
    tenant_id: TenantId, agent_id: AgentId, caller: Caller, ports: Ports, response: Response
) -> AgentOut:
    agent = await queries.get_agent(ports.views, tenant_id, agent_id)
    return http.with_etag(response, agent.version, AgentOut.of(agent))


@agents_router.put(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Update an agent",
    responses={200: {"headers": http.ETAG_HEADER}, **http.errors(404, 409, 412, 422)},
)
async def update_agent(
    tenant_id: TenantId,
    agent_id: AgentId,
    body: AgentUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> AgentOut:
    """Changes the given fields; with `If-Match` only if the agent is still at that version
    (publishing or updating a version also moves the agent's version)."""
    agent = await handlers.update_agent(
        commands.UpdateAgent(
            tenant_id=tenant_id,
            agent_id=agent_id,
            actor=caller.principal_id,
            changes=body.model_dump(exclude_unset=True),
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, agent.version, AgentOut.of(agent))


@agents_router.delete(
    "/{agent_id}", status_code=204, summary="Delete an agent", responses=http.errors(404, 409, 412, 422)
)
async def delete_agent(
    tenant_id: TenantId,
    agent_id: AgentId,
    caller: Caller,
    ports: Ports,
    if_match: IfMatch = None,
) -> Response:
    """The agent and its versions disappear from every read."""
    await handlers.delete_agent(
        commands.DeleteAgent(
            tenant_id=tenant_id,
            agent_id=agent_id,
            actor=caller.principal_id,
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return Response(status_code=204)


# --- agent versions -------------------------------------------------------------------------------


@versions_router.get(
    "",
    response_model=Page[AgentVersionOut],
    summary="List versions of an agent",
    responses=http.errors(404, 422),
)
async def list_agent_versions(
    tenant_id: TenantId,
    agent_id: AgentId,
    caller: Caller,
    ports: Ports,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[VersionStatus | None, Query(description="Only versions with this status.")] = None,
) -> dict[str, Any]:
    """Versions in ascending order."""
    items, next_cursor = await queries.list_agent_versions(
        ports.views, tenant_id, agent_id, ListFilter(limit=limit, cursor=cursor, status=status)
    )
    return http.page([AgentVersionOut.of(v) for v in items], next_cursor)


@versions_router.post(
    "",
    status_code=201,
    response_model=AgentVersionOut,
    summary="Publish a version",
    responses={201: {"headers": http.CREATED_HEADERS}, **http.errors(404, 409, 422)},
)
async def publish_agent_version(
    tenant_id: TenantId,
    agent_id: AgentId,
    body: AgentVersionCreate,
    caller: Caller,
    ports: Ports,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Validates the flow graph (every problem is listed in `details`), numbers the version after the
    latest one and stores `flow-graph.json` and `config.json`."""

    async def action() -> StoredResponse:
        version = await handlers.publish_agent_version(
            commands.PublishAgentVersion(
                tenant_id=tenant_id,
                agent_id=agent_id,
                actor=caller.principal_id,
                flow_graph=body.flow_graph.model_dump(mode="json"),
                config=body.config,
                changelog=body.changelog,
            ),
            ports,
        )
        return http.created(
            AgentVersionOut.of(version), version.version, f"{request.url.path}/{version.number}"
        )

    return await http.once_per_idempotency_key(request, caller, tenant_id, idempotency_key, body, action)


@versions_router.get(
    "/{version}",
    response_model=AgentVersionOut,
    summary="Get a version",
    responses={200: {"headers": http.ETAG_HEADER}, **http.errors(404, 422)},
)
async def get_agent_version(
    tenant_id: TenantId,
    agent_id: AgentId,
    version: VersionNumber,
    caller: Caller,
    ports: Ports,
    response: Response,
) -> AgentVersionOut:
    found = await queries.get_agent_version(ports.views, tenant_id, agent_id, version)
    return http.with_etag(response, found.version, AgentVersionOut.of(found))


@versions_router.put(
    "/{version}",
    response_model=AgentVersionOut,
    summary="Update a version's status or changelog",
    responses={200: {"headers": http.ETAG_HEADER}, **http.errors(404, 409, 412, 422)},
)
async def update_agent_version(
    tenant_id: TenantId,
    agent_id: AgentId,
    version: VersionNumber,
    body: AgentVersionUpdate,
    caller: Caller,
    ports: Ports,
    response: Response,
    if_match: IfMatch = None,
) -> AgentVersionOut:
    """The flow of a version is immutable: publish a new version to change it."""
    updated = await handlers.update_agent_version(
        commands.UpdateAgentVersion(
            tenant_id=tenant_id,
            agent_id=agent_id,
            version=version,
            actor=caller.principal_id,
            changes=body.model_dump(exclude_unset=True),
            precondition=http.parse_if_match(if_match),
        ),
        ports,
    )
    return http.with_etag(response, updated.version, AgentVersionOut.of(updated))


@versions_router.get(
    "/{version}/files/{name}",
    summary="Get a stored file of a version",
    response_model=None,
    responses={
        200: {
            "description": "The JSON document as stored.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **http.errors(404, 422),
    },
)
async def get_agent_version_file(
    tenant_id: TenantId,
    agent_id: AgentId,
    version: VersionNumber,
    caller: Caller,
    ports: Ports,
    name: Annotated[
        str, Path(description="One of " + ", ".join(ARTIFACT_NAMES) + ".", examples=list(ARTIFACT_NAMES))
    ],
) -> JSONResponse:
    """`flow-graph.json` or `config.json` at `tenants/{tenant}/agents/{agent}/versions/{n}/`."""
    content = await queries.get_agent_version_file(ports.views, tenant_id, agent_id, version, name)
    return JSONResponse(content=content)


ROUTERS = (projects_router, agents_router, versions_router)
