"""The run-executor app on real MongoDB and Kafka, started once per test module, beside a fake
OpenAI server (real HTTP speaking the chat-completions wire format) that `openai` calls go to.

The executor learns agents, versions, prompts, tools and tenant plans from Kafka only, so tests
publish the registry and tenancy events it needs to the module's prefixed topics (`Executor.agent`,
`Executor.plan`, `Executor.tool`) and wait until its views have them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.registry import AgentCreated, AgentVersionPublished, FlowGraph
from ailab_contracts.events.tenancy import TenantCreated, TenantLimits
from ailab_contracts.events.tools import ToolCreated
from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from ailab_contracts.topics import TENANCY
from ailab_runtime.kafka import encode
from ailab_runtime.service import Runtime, create_app
from run_executor.adapters.registry_views import AGENT_VERSIONS, AGENTS, TENANT_PLANS, TOOLS, version_key
from run_executor.bootstrap import SPEC
from run_executor.config import Settings
from tests.support.infra import Infra
from tests.support.kafka import read_topic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # makes tests/fakes importable
from fakes import provider_openai as fo  # noqa: E402
from fakes.provider_http import FakeServer  # noqa: E402

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
LIMITS = TenantLimits(
    max_users=5,
    max_projects=5,
    max_requests_per_month=10_000,
    max_tokens_per_month=1_000_000,
    max_storage_gb=1,
)


@dataclass
class Executor:
    """A running run-executor app, a client that calls it as the gateway does, and the fake OpenAI."""

    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient
    openai: FakeServer
    _versions: dict[str, int] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @staticmethod
    def tenant() -> str:
        return f"ten_{uuid.uuid4().hex[:10]}"

    async def publish(self, topic: str, tenant: str, stream_id: str, *events: BaseModel) -> None:
        """Publish events as their producer would: one stream, consecutive versions, key = tenant."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            for event in events:
                version = self._versions.get(stream_id, 0) + 1
                self._versions[stream_id] = version
                envelope = new_envelope(
                    REGISTRY,
                    event,
                    stream_id=stream_id,
                    stream_version=version,
                    tenant_id=tenant,
                    producer="agent-registry" if topic == REGISTRY_TOPIC else "gateway",
                )
                await producer.send_and_wait(
                    self.settings.topic(topic),
                    value=encode(envelope.to_wire()),
                    key=tenant.encode(),
                    headers=[("event_type", envelope.event_type.encode())],
                )
        finally:
            await producer.stop()

    async def _wait_doc(
        self, collection: str, doc_id: str, check: Any = None, timeout_s: float = 60
    ) -> dict[str, Any]:
        col = self.runtime.db[collection]
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            doc = await col.find_one({"_id": doc_id})
            if doc is not None and (check is None or check(doc)):
                return doc
            assert asyncio.get_running_loop().time() < deadline, f"{collection}/{doc_id} never arrived: {doc}"
            await asyncio.sleep(0.1)

    async def agent(
        self,
        tenant: str,
        flow: dict[str, Any],
        config: dict[str, Any] | None = None,
        project_id: str | None = None,
    ) -> str:
        """An agent with one published version (`flow`), known to the executor's views."""
        agent_id = f"agt_{uuid.uuid4().hex[:12]}"
        await self.publish(
            REGISTRY_TOPIC,
            tenant,
            f"agent:{tenant}:{agent_id}",
            AgentCreated(agent_id=agent_id, project_id=project_id, name="Agent", created_by="usr_test"),
            AgentVersionPublished(
                agent_id=agent_id,
                version=1,
                flow_graph=FlowGraph.model_validate(flow),
                config=config or {},
                created_by="usr_test",
            ),
        )
        await self._wait_doc(AGENT_VERSIONS, version_key(agent_id, 1))
        await self._wait_doc(AGENTS, agent_id, lambda d: d.get("latest_version") == 1)
        return agent_id

    async def plan(self, tenant: str, plan: str) -> None:
        await self.publish(
            TENANCY,
            tenant,
            f"tenant:{tenant}",
            TenantCreated(tenant_id=tenant, name="Tenant", plan=plan, limits=LIMITS, created_by="usr_admin"),  # type: ignore[arg-type]
        )
        await self._wait_doc(TENANT_PLANS, tenant, lambda d: d.get("plan") == plan)

    async def tool(self, tenant: str, **definition: Any) -> str:
        tool_id = f"tol_{uuid.uuid4().hex[:12]}"
        await self.publish(
            REGISTRY_TOPIC,
            tenant,
            f"tool:{tenant}:{tool_id}",
            ToolCreated(tool_id=tool_id, created_by="usr_test", **definition),
        )
        await self._wait_doc(TOOLS, tool_id)
        return tool_id

    async def start(self, tenant: str, agent_id: str, **body: Any) -> dict[str, Any]:
        response = await self.client.post(f"/v1/tenants/{tenant}/runs", json={"agent_id": agent_id, **body})
        assert response.status_code == 201, response.text
        run: dict[str, Any] = response.json()
        return run

    async def wait(
        self, tenant: str, run_id: str, statuses: tuple[str, ...] = TERMINAL, timeout_s: float = 60
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            response = await self.client.get(f"/v1/tenants/{tenant}/runs/{run_id}")
            assert response.status_code == 200, response.text
            run: dict[str, Any] = response.json()
            if run["status"] in statuses:
                return run
            assert asyncio.get_running_loop().time() < deadline, f"run stayed {run['status']}: {run}"
            await asyncio.sleep(0.05)

    async def usage_events(self, run_id: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        """`usage.UsageRecorded` events of the run from the prefixed `ailab.usage.events` topic."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        found: list[dict[str, Any]] = []
        while asyncio.get_running_loop().time() < deadline:
            records = await read_topic(
                self.settings.kafka_bootstrap_servers,
                self.settings.topic("ailab.usage.events"),
                until=10**9,
                timeout_s=2,
            )
            found = [
                body
                for body in (json.loads(r.value or b"{}") for r in records)
                if body.get("event_type") == "usage.UsageRecorded" and body["payload"].get("run_id") == run_id
            ]
            if len(found) >= count:
                return found
        raise AssertionError(f"expected {count} usage events of {run_id}, got {len(found)}: {found}")


async def wait_for_mongo(uri: str, timeout_s: float = 60.0) -> None:
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


def settings_for(infra: Infra, **overrides: Any) -> Settings:
    # lookups of unknown agents/prompts/tools wait this long for the views; short unless a test says so
    overrides.setdefault("registry_view_wait_s", 1.0)
    return Settings(
        mongodb_uri=infra.mongodb_uri,
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_database=infra.unique("test_runs_"),
        topic_prefix=infra.unique("truns") + ".",
        environment="test",
        **overrides,
    )


HEADERS = {"X-Principal-Id": "usr_test", "X-Principal-Role": "developer"}


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeServer]:
    with FakeServer(fo.echo) as server:
        yield server


@pytest.fixture(scope="module")
async def executor(
    infra: Infra, fake_openai: FakeServer, request: pytest.FixtureRequest
) -> AsyncIterator[Executor]:
    """The module may set `EXECUTOR_SETTINGS` (a dict of Settings overrides)."""
    await wait_for_mongo(infra.mongodb_uri)
    overrides = dict(getattr(request.module, "EXECUTOR_SETTINGS", {}))
    settings = settings_for(infra, openai_base_url=fake_openai.base_url, **overrides)
    app = create_app(SPEC, settings)
    headers = {"X-Internal-Token": settings.internal_token, **HEADERS}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://executor", headers=headers
        ) as client:
            deadline = asyncio.get_running_loop().time() + 60
            while (await client.get("/readyz")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, "run-executor never became ready"
                await asyncio.sleep(0.2)
            yield Executor(app, settings, client, fake_openai)
    cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    await cleanup.drop_database(settings.database_name)
    await cleanup.close()
