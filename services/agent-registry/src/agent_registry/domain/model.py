"""Aggregates of the registry: their state, how events evolve it, and the rules deciding new events.

State is folded from events by the `evolve_*` functions (the projections persist exactly that
fold, so an inline-built view, a rebuilt view and a command's response are the same data).
The `decide_*` functions check the rules of a command against the current state and return the
events to record; they never perform I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, get_args

from pydantic import BaseModel

from ailab_contracts.events.registry import (
    AgentCreated,
    AgentDeleted,
    AgentUpdated,
    AgentVersionPublished,
    AgentVersionUpdated,
    EntityStatus,
    ProjectCreated,
    ProjectDeleted,
    ProjectUpdated,
    VersionStatus,
)

from .commands import (
    CreateAgent,
    CreateProject,
    DeleteAgent,
    DeleteProject,
    PublishAgentVersion,
    UpdateAgent,
    UpdateAgentVersion,
    UpdateProject,
)
from .errors import AgentArchived, InvalidReference, NotFound
from .flow_graph import parse_flow_graph
from .lifecycle import (
    DELETED,
    DeletedByStatus,
    EventMeta,
    changed_fields,
    check_changes,
    created_fields,
    new_entity_fields,
    require_live,
    require_storable,
    set_fields,
    stamps,
    touched,
)

ENTITY_STATUSES: tuple[str, ...] = get_args(EntityStatus)
VERSION_STATUSES: tuple[str, ...] = get_args(VersionStatus)
ARTIFACT_NAMES: tuple[str, ...] = ("flow-graph.json", "config.json")

PROJECT_FIELDS = ("name", "description", "tags", "metadata", "status")
AGENT_FIELDS = ("project_id", "name", "description", "type", "tags", "metadata", "status")
VERSION_FIELDS = ("status", "changelog")


def project_stream(tenant_id: str, project_id: str) -> str:
    return f"project:{tenant_id}:{project_id}"


def agent_stream(tenant_id: str, agent_id: str) -> str:
    return f"agent:{tenant_id}:{agent_id}"


def artifact_path(tenant_id: str, agent_id: str, version: int, name: str) -> str:
    return f"tenants/{tenant_id}/agents/{agent_id}/versions/{version}/{name}"


@dataclass(frozen=True)
class Project(DeletedByStatus):
    id: str
    tenant_id: str
    name: str
    description: str | None
    status: str
    tags: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int  # stream version this state reflects (the ETag)


@dataclass(frozen=True)
class Agent(DeletedByStatus):
    id: str
    tenant_id: str
    project_id: str | None
    name: str
    description: str | None
    type: str
    status: str
    tags: list[str]
    metadata: dict[str, Any]
    latest_version: int | None
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int


@dataclass(frozen=True)
class AgentVersion:
    tenant_id: str
    agent_id: str
    number: int  # 1, 2, 3 ... per agent
    status: str
    flow_graph: dict[str, Any]
    config: dict[str, Any]
    changelog: str | None
    artifacts: list[str]
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int  # stream version of the agent stream this state reflects

    @property
    def id(self) -> str:
        return f"{self.agent_id}:v{self.number}"


# --- evolving state from events ---------------------------------------------------------------


def evolve_project(
    state: Project | None, tenant_id: str, event: BaseModel, meta: EventMeta
) -> Project | None:
    """The project after `event`; None when the event does not concern an existing project."""
    if isinstance(event, ProjectCreated):
        if state is not None:
            return state
        return Project(id=event.project_id, **new_entity_fields(event, tenant_id, meta))
    if state is None:
        return None
    if isinstance(event, ProjectUpdated):
        return touched(state, meta, event.updated_by, **set_fields(event, PROJECT_FIELDS))
    if isinstance(event, ProjectDeleted):
        return touched(state, meta, event.deleted_by, status=DELETED)
    return None


def evolve_agent(state: Agent | None, tenant_id: str, event: BaseModel, meta: EventMeta) -> Agent | None:
    """The agent after `event` (every event of its stream moves `version`, versions included)."""
    if isinstance(event, AgentCreated):
        if state is not None:
            return state
        return Agent(
            id=event.agent_id,
            project_id=event.project_id,
            type=event.type,
            latest_version=None,
            **new_entity_fields(event, tenant_id, meta),
        )
    if state is None:
        return None
    if isinstance(event, AgentUpdated):
        return touched(state, meta, event.updated_by, **set_fields(event, AGENT_FIELDS))
    if isinstance(event, AgentDeleted):
        return touched(state, meta, event.deleted_by, status=DELETED)
    if isinstance(event, AgentVersionPublished):
        latest = max(state.latest_version or 0, event.version)
        return touched(state, meta, event.created_by, latest_version=latest)
    if isinstance(event, AgentVersionUpdated):
        return replace(state, version=meta.stream_version)
    return None


def evolve_agent_version(
    state: AgentVersion | None, tenant_id: str, event: BaseModel, meta: EventMeta
) -> AgentVersion | None:
    if isinstance(event, AgentVersionPublished):
        if state is not None:
            return state
        return AgentVersion(
            tenant_id=tenant_id,
            agent_id=event.agent_id,
            number=event.version,
            status="active",
            flow_graph=event.flow_graph.model_dump(mode="json"),
            config=dict(event.config),
            changelog=event.changelog,
            artifacts=[artifact_path(tenant_id, event.agent_id, event.version, n) for n in ARTIFACT_NAMES],
            **stamps(meta, event.created_by),
        )
    if state is None:
        return None
    if isinstance(event, AgentVersionUpdated) and event.version == state.number:
        return touched(state, meta, event.updated_by, **set_fields(event, VERSION_FIELDS))
    return None


def artifact_documents(event: AgentVersionPublished) -> dict[str, Any]:
    """The files a published version stores, by name (`flow-graph.json`, `config.json`)."""
    return {"flow-graph.json": event.flow_graph.model_dump(mode="json"), "config.json": dict(event.config)}


# --- deciding events from commands --------------------------------------------------------------


def decide_create_project(project_id: str, cmd: CreateProject) -> ProjectCreated:
    return ProjectCreated(project_id=project_id, **created_fields(cmd))


def decide_update_project(project: Project | None, cmd: UpdateProject) -> ProjectUpdated | None:
    """None when nothing would change (the caller gets the current state back)."""
    live = require_live(project, "project", cmd.project_id, cmd.precondition)
    changes = changed_fields(live, cmd.changes, PROJECT_FIELDS)
    check_changes(changes, delete_refusal="use DeleteProject to delete a project")
    return ProjectUpdated(project_id=live.id, updated_by=cmd.actor, **changes) if changes else None


def decide_delete_project(project: Project | None, cmd: DeleteProject) -> ProjectDeleted:
    live = require_live(project, "project", cmd.project_id, cmd.precondition)
    return ProjectDeleted(project_id=live.id, deleted_by=cmd.actor)


def _require_project_reference(project_id: str, project: Project | None, tenant_id: str) -> None:
    if project is None or project.deleted or project.tenant_id != tenant_id:
        raise InvalidReference("project_id", "project", project_id)


def decide_create_agent(agent_id: str, cmd: CreateAgent, project: Project | None) -> AgentCreated:
    """`project` is the project named by `cmd.project_id` (None if it was not found)."""
    if cmd.project_id is not None:
        _require_project_reference(cmd.project_id, project, cmd.tenant_id)
    return AgentCreated(agent_id=agent_id, project_id=cmd.project_id, type=cmd.type, **created_fields(cmd))


def decide_update_agent(
    agent: Agent | None, cmd: UpdateAgent, project: Project | None
) -> AgentUpdated | None:
    live = require_live(agent, "agent", cmd.agent_id, cmd.precondition)
    changes = changed_fields(live, cmd.changes, AGENT_FIELDS)
    if "project_id" in changes:
        _require_project_reference(changes["project_id"], project, cmd.tenant_id)
    check_changes(changes, delete_refusal="use DeleteAgent to delete an agent")
    return AgentUpdated(agent_id=live.id, updated_by=cmd.actor, **changes) if changes else None


def decide_delete_agent(agent: Agent | None, cmd: DeleteAgent) -> AgentDeleted:
    live = require_live(agent, "agent", cmd.agent_id, cmd.precondition)
    return AgentDeleted(agent_id=live.id, deleted_by=cmd.actor)


def decide_publish_version(agent: Agent | None, cmd: PublishAgentVersion) -> AgentVersionPublished:
    """A new version numbered after the agent's latest; the graph must pass every flow rule."""
    live = require_live(agent, "agent", cmd.agent_id)
    if live.status == "archived":
        raise AgentArchived(live.id)
    flow_graph = parse_flow_graph(cmd.flow_graph)
    require_storable(dict(cmd.config), ["body", "config"])
    return AgentVersionPublished(
        agent_id=live.id,
        version=(live.latest_version or 0) + 1,
        flow_graph=flow_graph,
        config=dict(cmd.config),
        changelog=cmd.changelog,
        created_by=cmd.actor,
    )


def decide_update_version(
    agent: Agent | None, version: AgentVersion | None, cmd: UpdateAgentVersion
) -> AgentVersionUpdated | None:
    require_live(agent, "agent", cmd.agent_id)
    if version is None:
        raise NotFound("agent version", f"{cmd.agent_id}:v{cmd.version}")
    if cmd.precondition:
        cmd.precondition.check(version.version)
    changes = changed_fields(version, cmd.changes, VERSION_FIELDS)
    return (
        AgentVersionUpdated(
            agent_id=version.agent_id, version=version.number, updated_by=cmd.actor, **changes
        )
        if changes
        else None
    )
