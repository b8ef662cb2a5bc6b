"""Queries: what a caller may read. Deleted entities, and everything under a deleted agent, are
not found."""

from __future__ import annotations

from typing import Any

from ..domain.errors import NotFound
from ..domain.lifecycle import require_live
from ..domain.model import ARTIFACT_NAMES, Agent, AgentVersion, Project, artifact_path
from .ports import ListFilter, RegistryViews


async def get_project(views: RegistryViews, tenant_id: str, project_id: str) -> Project:
    return require_live(await views.project(tenant_id, project_id), "project", project_id)


async def list_projects(
    views: RegistryViews, tenant_id: str, flt: ListFilter
) -> tuple[list[Project], str | None]:
    return await views.projects(tenant_id, flt)


async def get_agent(views: RegistryViews, tenant_id: str, agent_id: str) -> Agent:
    return require_live(await views.agent(tenant_id, agent_id), "agent", agent_id)


async def list_agents(
    views: RegistryViews, tenant_id: str, flt: ListFilter
) -> tuple[list[Agent], str | None]:
    return await views.agents(tenant_id, flt)


async def get_agent_version(views: RegistryViews, tenant_id: str, agent_id: str, number: int) -> AgentVersion:
    await get_agent(views, tenant_id, agent_id)
    version = await views.agent_version(tenant_id, agent_id, number)
    if version is None:
        raise NotFound("agent version", f"{agent_id}:v{number}")
    return version


async def list_agent_versions(
    views: RegistryViews, tenant_id: str, agent_id: str, flt: ListFilter
) -> tuple[list[AgentVersion], str | None]:
    await get_agent(views, tenant_id, agent_id)
    return await views.agent_versions(tenant_id, agent_id, flt)


async def get_agent_version_file(
    views: RegistryViews, tenant_id: str, agent_id: str, number: int, name: str
) -> Any:
    """A stored file of a version (`flow-graph.json` or `config.json`)."""
    if name not in ARTIFACT_NAMES:
        raise NotFound("file", name)
    await get_agent_version(views, tenant_id, agent_id, number)
    path = artifact_path(tenant_id, agent_id, number, name)
    content = await views.artifact(tenant_id, path)
    if content is None:
        raise NotFound("file", path)
    return content
