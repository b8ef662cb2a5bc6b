"""Command handlers: load state from the read model, let the domain decide, record the events.

The stream's optimistic concurrency guards every write: state read from a view that lags the
stream yields a stale expected version and the append fails with 409, never a lost update.
Each handler returns the state after its events, folded in memory (read-your-writes even if
the inline projection failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from ..domain import model
from ..domain.commands import (
    CreateAgent,
    CreateProject,
    DeleteAgent,
    DeleteProject,
    PublishAgentVersion,
    UpdateAgent,
    UpdateAgentVersion,
    UpdateProject,
)
from ..domain.lifecycle import fold
from ..domain.model import Agent, AgentVersion, Project
from .ports import RegistryPorts

S = TypeVar("S")


async def _record(
    ports: RegistryPorts,
    evolve: Callable[..., Any],
    state: S | None,
    *,
    tenant_id: str,
    stream_id: str,
    expected_version: int,
    events: Sequence[BaseModel],
) -> S:
    envelopes = await ports.recorder.record(
        stream_id=stream_id, expected_version=expected_version, tenant_id=tenant_id, events=events
    )
    new_state: S = fold(evolve, state, tenant_id, zip(envelopes, events, strict=True))
    return new_state


async def create_project(cmd: CreateProject, ports: RegistryPorts) -> Project:
    event = model.decide_create_project(ports.new_id("prj"), cmd)
    return await _record(
        ports,
        model.evolve_project,
        None,
        tenant_id=cmd.tenant_id,
        stream_id=model.project_stream(cmd.tenant_id, event.project_id),
        expected_version=0,
        events=[event],
    )


async def update_project(cmd: UpdateProject, ports: RegistryPorts) -> Project:
    project = await ports.views.project(cmd.tenant_id, cmd.project_id)
    event = model.decide_update_project(project, cmd)
    assert project is not None
    if event is None:
        return project
    return await _record(
        ports,
        model.evolve_project,
        project,
        tenant_id=cmd.tenant_id,
        stream_id=model.project_stream(cmd.tenant_id, project.id),
        expected_version=project.version,
        events=[event],
    )


async def delete_project(cmd: DeleteProject, ports: RegistryPorts) -> Project:
    project = await ports.views.project(cmd.tenant_id, cmd.project_id)
    event = model.decide_delete_project(project, cmd)
    assert project is not None
    return await _record(
        ports,
        model.evolve_project,
        project,
        tenant_id=cmd.tenant_id,
        stream_id=model.project_stream(cmd.tenant_id, project.id),
        expected_version=project.version,
        events=[event],
    )


async def create_agent(cmd: CreateAgent, ports: RegistryPorts) -> Agent:
    project = await ports.views.project(cmd.tenant_id, cmd.project_id) if cmd.project_id else None
    event = model.decide_create_agent(ports.new_id("agt"), cmd, project)
    return await _record(
        ports,
        model.evolve_agent,
        None,
        tenant_id=cmd.tenant_id,
        stream_id=model.agent_stream(cmd.tenant_id, event.agent_id),
        expected_version=0,
        events=[event],
    )


async def update_agent(cmd: UpdateAgent, ports: RegistryPorts) -> Agent:
    agent = await ports.views.agent(cmd.tenant_id, cmd.agent_id)
    new_project_id = cmd.changes.get("project_id")
    project = await ports.views.project(cmd.tenant_id, new_project_id) if new_project_id else None
    event = model.decide_update_agent(agent, cmd, project)
    assert agent is not None
    if event is None:
        return agent
    return await _record(
        ports,
        model.evolve_agent,
        agent,
        tenant_id=cmd.tenant_id,
        stream_id=model.agent_stream(cmd.tenant_id, agent.id),
        expected_version=agent.version,
        events=[event],
    )


async def delete_agent(cmd: DeleteAgent, ports: RegistryPorts) -> Agent:
    agent = await ports.views.agent(cmd.tenant_id, cmd.agent_id)
    event = model.decide_delete_agent(agent, cmd)
    assert agent is not None
    return await _record(
        ports,
        model.evolve_agent,
        agent,
        tenant_id=cmd.tenant_id,
        stream_id=model.agent_stream(cmd.tenant_id, agent.id),
        expected_version=agent.version,
        events=[event],
    )


async def publish_agent_version(cmd: PublishAgentVersion, ports: RegistryPorts) -> AgentVersion:
    """Version numbers follow the agent's latest; two concurrent publishes conflict on the stream."""
    agent = await ports.views.agent(cmd.tenant_id, cmd.agent_id)
    event = model.decide_publish_version(agent, cmd)
    assert agent is not None
    return await _record(
        ports,
        model.evolve_agent_version,
        None,
        tenant_id=cmd.tenant_id,
        stream_id=model.agent_stream(cmd.tenant_id, agent.id),
        expected_version=agent.version,
        events=[event],
    )


async def update_agent_version(cmd: UpdateAgentVersion, ports: RegistryPorts) -> AgentVersion:
    agent = await ports.views.agent(cmd.tenant_id, cmd.agent_id)
    version = (
        await ports.views.agent_version(cmd.tenant_id, cmd.agent_id, cmd.version)
        if agent is not None and not agent.deleted
        else None
    )
    event = model.decide_update_version(agent, version, cmd)
    assert agent is not None and version is not None
    if event is None:
        return version
    return await _record(
        ports,
        model.evolve_agent_version,
        version,
        tenant_id=cmd.tenant_id,
        stream_id=model.agent_stream(cmd.tenant_id, agent.id),
        expected_version=agent.version,
        events=[event],
    )
