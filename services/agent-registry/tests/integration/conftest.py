"""The agent-registry app on real MongoDB and Kafka, started once per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_registry.adapters.documents import VIEWS
from agent_registry.bootstrap import SPEC
from agent_registry.config import Settings
from tests.support.infra import Infra
from tests.support.service_app import ServiceApp, infra_settings, running_app, wait_for_mongo

FLOW = {
    "nodes": [
        {"id": "in", "type": "input"},
        {"id": "draft", "type": "llm", "config": {"model": "gpt-4o-mini", "temperature": 0.2}},
        {"id": "out", "type": "output"},
    ],
    "edges": [{"source": "in", "target": "draft"}, {"source": "draft", "target": "out"}],
}


class Registry(ServiceApp[Settings]):
    """A running registry app and a client that calls it as the gateway does."""

    async def create(self, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def project(self, tenant: str, **body: Any) -> dict[str, Any]:
        return await self.create(f"/v1/tenants/{tenant}/projects", {"name": "Project", **body})

    async def agent(self, tenant: str, **body: Any) -> dict[str, Any]:
        return await self.create(f"/v1/tenants/{tenant}/agents", {"name": "Agent", **body})

    async def version(self, tenant: str, agent_id: str, **body: Any) -> dict[str, Any]:
        return await self.create(
            f"/v1/tenants/{tenant}/agents/{agent_id}/versions", {"flow_graph": FLOW, **body}
        )

    async def views(self) -> dict[str, list[dict[str, Any]]]:
        """Every view document, sorted by `_id`."""
        db = self.runtime.db
        return {name: sorted([d async for d in db[name].find({})], key=lambda d: d["_id"]) for name in VIEWS}


@pytest.fixture(scope="module")
async def registry(infra: Infra) -> AsyncIterator[Registry]:
    await wait_for_mongo(infra.mongodb_uri)
    settings = Settings(**infra_settings(infra, "test_registry_", "treg"))
    principal = {"X-Principal-Id": "usr_test", "X-Principal-Role": "developer"}
    async with running_app(
        SPEC, settings, base_url="http://registry", principal=principal, wait_ready=False
    ) as (app, client):
        yield Registry(app, settings, client)
