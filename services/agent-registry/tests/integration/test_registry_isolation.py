"""The internal credential is required, and no tenant sees another's entities."""

from __future__ import annotations

import httpx
import pytest

from .conftest import Registry

pytestmark = pytest.mark.integration


async def test_missing_or_wrong_internal_token_is_401(registry: Registry) -> None:
    tenant = registry.tenant()
    transport = httpx.ASGITransport(app=registry.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as anonymous:
        for method, path in [
            ("GET", f"/v1/tenants/{tenant}/projects"),
            ("POST", f"/v1/tenants/{tenant}/projects"),
            ("GET", f"/v1/tenants/{tenant}/agents/agt_x"),
            ("PUT", f"/v1/tenants/{tenant}/agents/agt_x/versions/1"),
            ("GET", f"/v1/tenants/{tenant}/agents/agt_x/versions/1/files/config.json"),
        ]:
            json_body = {"name": "x"} if method in ("POST", "PUT") else None
            response = await anonymous.request(method, path, json=json_body)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "unauthorized"
            wrong = await anonymous.request(
                method, path, json=json_body, headers={"X-Internal-Token": "nope"}
            )
            assert wrong.status_code == 401
    assert (await registry.client.get(f"/v1/tenants/{tenant}/projects")).json()["items"] == []


async def test_entities_of_one_tenant_are_not_found_under_another(registry: Registry) -> None:
    a, b = registry.tenant(), registry.tenant()
    project = await registry.project(a, tags=["shared"])
    agent = await registry.agent(a, project_id=project["id"], tags=["shared"])
    await registry.version(a, agent["id"])

    for path in (
        f"/projects/{project['id']}",
        f"/agents/{agent['id']}",
        f"/agents/{agent['id']}/versions",
        f"/agents/{agent['id']}/versions/1",
        f"/agents/{agent['id']}/versions/1/files/flow-graph.json",
    ):
        assert (await registry.client.get(f"/v1/tenants/{a}{path}")).status_code == 200, path
        response = await registry.client.get(f"/v1/tenants/{b}{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"

    assert (
        await registry.client.put(f"/v1/tenants/{b}/projects/{project['id']}", json={"name": "x"})
    ).status_code == 404
    assert (await registry.client.delete(f"/v1/tenants/{b}/agents/{agent['id']}")).status_code == 404
    publish = await registry.client.post(
        f"/v1/tenants/{b}/agents/{agent['id']}/versions",
        json={"flow_graph": {"nodes": [{"id": "i", "type": "input"}]}},
    )
    assert publish.status_code == 404
    in_b = await registry.client.post(
        f"/v1/tenants/{b}/agents", json={"name": "x", "project_id": project["id"]}
    )
    assert in_b.status_code == 422, "a project of another tenant is not a valid reference"

    for listing in ("/projects", "/agents", f"/agents?project_id={project['id']}", "/projects?tag=shared"):
        assert (await registry.client.get(f"/v1/tenants/{b}{listing}")).json()["items"] == [], listing
    # tenant A was untouched by tenant B's attempts
    assert (await registry.client.get(f"/v1/tenants/{a}/agents/{agent['id']}")).json()["version"] == agent[
        "version"
    ] + 1
