"""Command handlers: load state from the read model, let the domain decide, record the events
(`recording.record_and_fold`: guarded by the stream's expected version, folded in memory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from ..domain import commands, model
from ..domain.model import Agent, AgentVersion, Project
from .ports import RegistryPorts
from .recording import record_and_fold

S = TypeVar("S")


async def _record_project(
    ports: RegistryPorts, project: Project | None, tenant_id: str, project_id: str, event: BaseModel
) -> Project:
    """On the project's stream, at the version `project` was read at (0 for a new project)."""
    return await record_and_fold(
        ports.recorder,
        model.evolve_project,
        project,
        tenant_id=tenant_id,
        stream_id=model.project_stream(tenant_id, project_id),
        expected_version=project.version if project else 0,
        events=[event],
    )


async def _record_on_agent(
    ports: RegistryPorts,
    evolve: Callable[..., Any],
    state: S | None,
    agent: Agent | None,
    tenant_id: str,
    agent_id: str,
    event: BaseModel,
) -> S:
    """On the agent's stream (its versions' events too), at the version `agent` was read at (0 for
    a new agent); `evolve` folds the result into `state` (the agent or one of its versions)."""
    return await record_and_fold(
        ports.recorder,
        evolve,
        state,
        tenant_id=tenant_id,
        stream_id=model.agent_stream(tenant_id, agent_id),
        expected_version=agent.version if agent else 0,
        events=[event],
    )


async def create_project(cmd: commands.CreateProject, ports: RegistryPorts) -> Project:
    event = model.decide_create_project(ports.new_id("prj"), cmd)
    return await _record_project(ports, None, cmd.tenant_id, event.project_id, event)


async def update_project(cmd: commands.UpdateProject, ports: RegistryPorts) -> Project:
    project = await ports.views.project(cmd.tenant_id, cmd.project_id)
    event = model.decide_update_project(project, cmd)
    assert project is not None
    if event is None:
        return project
    return await _record_project(ports, project, cmd.tenant_id, project.id, event)


async def delete_project(cmd: commands.DeleteProject, ports: RegistryPorts) -> Project:
    project = await ports.views.project(cmd.tenant_id, cmd.project_id)
    event = model.decide_delete_project(project, cmd)
    assert project is not None
    return await _record_project(ports, project, cmd.tenant_id, project.id, event)


async def create_agent(cmd: commands.CreateAgent, ports: RegistryPorts) -> Agent:
    project = await ports.views.project(cmd.tenant_id, cmd.project_id) if cmd.project_id else None
    event = model.decide_create_agent(ports.new_id("agt"), cmd, project)
    return await _record_on_agent(ports, model.evolve_agent, None, None, cmd.tenant_id, event.agent_id, event)


async def update_agent(cmd: commands.UpdateAgent, ports: RegistryPorts) -> Agent:
    agent = await ports.views.agent(cmd.tenant_id, cmd.agent_id)
    new_project_id = cmd.changes.get("project_id")
    project = await ports.views.project(cmd.tenant_id, new_project_id) if new_project_id else None
    event = model.decide_update_agent(agent, cmd, project)
    assert agent is not None
    if event is None:
        return agent
    return await _record_on_agent(ports, model.evolve_agent, agent, agent, cmd.tenant_id, agent.id, event)


async def delete_agent(cmd: commands.DeleteAgent, ports: RegistryPorts) -> Agent:
    agent = await ports.views.agent(cmd.tenant_id, cmd.agent_id)
    event = model.decide_delete_agent(agent, cmd)
    assert agent is not None
    return await _record_on_agent(ports, model.evolve_agent, agent, agent, cmd.tenant_id, agent.id, event)


async def publish_agent_version(cmd: commands.PublishAgentVersion, ports: RegistryPorts) -> AgentVersion:
    """Version numbers follow the agent's latest; two concurrent publishes conflict on the stream."""
    agent = await ports.views.agent(cmd.tenant_id, cmd.agent_id)
    event = model.decide_publish_version(agent, cmd)
    assert agent is not None
    return await _record_on_agent(
        ports, model.evolve_agent_version, None, agent, cmd.tenant_id, agent.id, event
    )


async def update_agent_version(cmd: commands.UpdateAgentVersion, ports: RegistryPorts) -> AgentVersion:
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
    return await _record_on_agent(
        ports, model.evolve_agent_version, version, agent, cmd.tenant_id, agent.id, event
    )
