"""The agent-registry app on real MongoDB and Kafka, started once per test module."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from agent_registry.adapters.documents import VIEWS
from agent_registry.bootstrap import SPEC
from agent_registry.config import Settings
from ailab_runtime.service import Runtime, create_app
from tests.support.infra import Infra

FLOW = {
    "nodes": [
        {"id": "in", "type": "input"},
        {"id": "draft", "type": "llm", "config": {"model": "gpt-4o-mini", "temperature": 0.2}},
        {"id": "out", "type": "output"},
    ],
    "edges": [{"source": "in", "target": "draft"}, {"source": "draft", "target": "out"}],
}


@dataclass
class Registry:
    """A running registry app and a client that calls it as the gateway does."""

    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @staticmethod
    def tenant() -> str:
        return f"ten_{uuid.uuid4().hex[:10]}"

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


async def _wait_for_mongo(uri: str, timeout_s: float = 60.0) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=2000)
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while True:
            try:
                await client.admin.command("ping")
                return
            except Exception:  # noqa: BLE001 - keep trying until the deadline
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await client.close()


@pytest.fixture(scope="module")
async def registry(infra: Infra) -> AsyncIterator[Registry]:
    await _wait_for_mongo(infra.mongodb_uri)
    settings = Settings(
        mongodb_uri=infra.mongodb_uri,
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_database=infra.unique("test_registry_"),
        topic_prefix=infra.unique("treg") + ".",
        environment="test",
    )
    app = create_app(SPEC, settings)
    headers = {
        "X-Internal-Token": settings.internal_token,
        "X-Principal-Id": "usr_test",
        "X-Principal-Role": "developer",
    }
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://registry", headers=headers
        ) as client:
            yield Registry(app, settings, client)
        await app.state.runtime.mongo.drop_database(settings.database_name)
