"""MongoDB read models of the registry. Every query filters by `tenant_id` first."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.pagination import keyset_page

from ..application.ports import ListFilter
from ..domain.model import Agent, AgentVersion, Project
from .documents import (
    AGENT_VERSIONS,
    AGENTS,
    ARTIFACTS,
    PROJECTS,
    agent_from_doc,
    agent_version_from_doc,
    project_from_doc,
    version_key,
)
from .mongo_lists import STATUS_AND_TAGS, ensure_list_indexes, live_entities_query

Db = AsyncDatabase[dict[str, Any]]


async def ensure_indexes(db: Db) -> None:
    """Indexes serving every view query: tenant first, then the filter, then `_id` (page order)."""
    for name in (PROJECTS, AGENTS):
        await ensure_list_indexes(db[name], STATUS_AND_TAGS)
    await db[AGENTS].create_index(
        [("tenant_id", ASCENDING), ("project_id", ASCENDING), ("_id", ASCENDING)], name="tenant_project"
    )
    await db[AGENT_VERSIONS].create_index(
        [("tenant_id", ASCENDING), ("agent_id", ASCENDING), ("_id", ASCENDING)], name="tenant_agent"
    )
    await db[AGENT_VERSIONS].create_index(
        [("tenant_id", ASCENDING), ("status", ASCENDING)], name="tenant_status"
    )
    await db[ARTIFACTS].create_index([("tenant_id", ASCENDING), ("_id", ASCENDING)], name="tenant_id")
    await db[ARTIFACTS].create_index(
        [("tenant_id", ASCENDING), ("agent_id", ASCENDING), ("version", ASCENDING)],
        name="tenant_agent_version",
    )


def _entity_query(tenant_id: str, flt: ListFilter) -> dict[str, Any]:
    query = live_entities_query(tenant_id, flt.status, flt.tag)
    if flt.project_id:
        query["project_id"] = flt.project_id
    return query


class MongoRegistryViews:
    """Implements `RegistryViews` over the collections the projections maintain."""

    def __init__(self, db: Db) -> None:
        self._projects = db[PROJECTS]
        self._agents = db[AGENTS]
        self._versions = db[AGENT_VERSIONS]
        self._artifacts = db[ARTIFACTS]

    async def project(self, tenant_id: str, project_id: str) -> Project | None:
        doc = await self._projects.find_one({"tenant_id": tenant_id, "_id": project_id})
        return project_from_doc(doc) if doc else None

    async def projects(self, tenant_id: str, flt: ListFilter) -> tuple[list[Project], str | None]:
        docs, cursor = await keyset_page(self._projects, _entity_query(tenant_id, flt), flt.cursor, flt.limit)
        return [project_from_doc(d) for d in docs], cursor

    async def agent(self, tenant_id: str, agent_id: str) -> Agent | None:
        doc = await self._agents.find_one({"tenant_id": tenant_id, "_id": agent_id})
        return agent_from_doc(doc) if doc else None

    async def agents(self, tenant_id: str, flt: ListFilter) -> tuple[list[Agent], str | None]:
        docs, cursor = await keyset_page(self._agents, _entity_query(tenant_id, flt), flt.cursor, flt.limit)
        return [agent_from_doc(d) for d in docs], cursor

    async def agent_version(self, tenant_id: str, agent_id: str, number: int) -> AgentVersion | None:
        doc = await self._versions.find_one({"tenant_id": tenant_id, "_id": version_key(agent_id, number)})
        return agent_version_from_doc(doc) if doc else None

    async def agent_versions(
        self, tenant_id: str, agent_id: str, flt: ListFilter
    ) -> tuple[list[AgentVersion], str | None]:
        query: dict[str, Any] = {"tenant_id": tenant_id, "agent_id": agent_id}
        if flt.status:
            query["status"] = flt.status
        docs, cursor = await keyset_page(self._versions, query, flt.cursor, flt.limit)
        return [agent_version_from_doc(d) for d in docs], cursor

    async def artifact(self, tenant_id: str, path: str) -> Any | None:
        doc = await self._artifacts.find_one({"tenant_id": tenant_id, "_id": path})
        return doc["content"] if doc else None
