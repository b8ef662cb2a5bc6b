"""Cursor pagination and the status, tag and project filters of the lists."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Registry

pytestmark = pytest.mark.integration


async def walk(registry: Registry, path: str, limit: int, **params: Any) -> tuple[list[str], int]:
    """Every id of a list, following `next_cursor`; returns the ids and the number of pages."""
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        response = await registry.client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        ids.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages


async def test_pages_cover_every_project_once_in_creation_order(registry: Registry) -> None:
    tenant = registry.tenant()
    created = [(await registry.project(tenant, name=f"p{i}"))["id"] for i in range(12)]
    ids, pages = await walk(registry, f"/v1/tenants/{tenant}/projects", limit=5)
    assert ids == created and pages == 3
    exact, exact_pages = await walk(registry, f"/v1/tenants/{tenant}/projects", limit=4)
    assert exact == created and exact_pages == 3, "a full last page has no next cursor"
    everything = (await registry.client.get(f"/v1/tenants/{tenant}/projects", params={"limit": 200})).json()
    assert [p["id"] for p in everything["items"]] == created and everything["next_cursor"] is None
    default = (await registry.client.get(f"/v1/tenants/{tenant}/projects")).json()
    assert len(default["items"]) == 12


async def test_deleted_entities_leave_no_hole_in_pages(registry: Registry) -> None:
    tenant = registry.tenant()
    created = [(await registry.agent(tenant, name=f"a{i}"))["id"] for i in range(7)]
    for agent_id in created[1::3]:
        assert (await registry.client.delete(f"/v1/tenants/{tenant}/agents/{agent_id}")).status_code == 204
    ids, _ = await walk(registry, f"/v1/tenants/{tenant}/agents", limit=2)
    assert ids == [a for a in created if a not in created[1::3]]


async def test_versions_are_paginated_in_version_order(registry: Registry) -> None:
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    for _ in range(5):
        await registry.version(tenant, agent["id"])
    ids, pages = await walk(registry, f"/v1/tenants/{tenant}/agents/{agent['id']}/versions", limit=2)
    assert ids == [f"{agent['id']}:v{n}" for n in range(1, 6)] and pages == 3


async def test_status_tag_and_project_filters(registry: Registry) -> None:
    tenant = registry.tenant()
    p1 = await registry.project(tenant, tags=["red", "big"])
    p2 = await registry.project(tenant, tags=["blue"])
    p3 = await registry.project(tenant, tags=["red"])
    await registry.client.put(f"/v1/tenants/{tenant}/projects/{p3['id']}", json={"status": "archived"})
    base = f"/v1/tenants/{tenant}/projects"

    async def ids(**params: Any) -> list[str]:
        response = await registry.client.get(base, params=params)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["items"]]

    assert await ids(tag="red") == [p1["id"], p3["id"]]
    assert await ids(tag="red", status="active") == [p1["id"]]
    assert await ids(status="archived") == [p3["id"]]
    assert await ids(status="inactive") == []
    assert await ids(tag="blue") == [p2["id"]]
    assert await ids(tag="none") == []

    a1 = await registry.agent(tenant, project_id=p1["id"], tags=["x"])
    a2 = await registry.agent(tenant, project_id=p2["id"], tags=["x"])
    a3 = await registry.agent(tenant, tags=["y"])
    await registry.client.put(f"/v1/tenants/{tenant}/agents/{a2['id']}", json={"status": "inactive"})
    agents = f"/v1/tenants/{tenant}/agents"

    async def agent_ids(**params: Any) -> list[str]:
        return [a["id"] for a in (await registry.client.get(agents, params=params)).json()["items"]]

    assert await agent_ids(project_id=p1["id"]) == [a1["id"]]
    assert await agent_ids(tag="x") == [a1["id"], a2["id"]]
    assert await agent_ids(tag="x", status="inactive") == [a2["id"]]
    assert await agent_ids(tag="y") == [a3["id"]]
    ids_paged, _ = await walk(registry, agents, limit=1, tag="x")
    assert ids_paged == [a1["id"], a2["id"]]
