"""The run-executor app on real MongoDB and Kafka, started once per test module, beside a fake
OpenAI server (real HTTP speaking the chat-completions wire format) that `openai` calls go to.

The executor learns agents, versions, prompts, tools and tenant plans from Kafka only, so tests
publish the registry and tenancy events it needs to the module's prefixed topics (`Executor.agent`,
`Executor.plan`, `Executor.tool`) and wait until its views have them.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ailab_contracts.events.registry import AgentCreated, AgentVersionPublished, FlowGraph
from ailab_contracts.events.tenancy import TenantCreated, TenantLimits
from ailab_contracts.events.tools import ToolCreated
from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from ailab_contracts.topics import TENANCY
from run_executor.adapters.registry_views import AGENT_VERSIONS, AGENTS, TENANT_PLANS, TOOLS, version_key
from run_executor.bootstrap import SPEC
from run_executor.config import Settings
from tests.support.infra import Infra
from tests.support.kafka import read_events
from tests.support.service_app import ServiceApp, eventually, infra_settings, running_app, wait_for_mongo

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
class Executor(ServiceApp[Settings]):
    """A running run-executor app, a client that calls it as the gateway does, and the fake OpenAI."""

    openai: FakeServer

    async def publish(
        self, topic: str, tenant: str, stream_id: str, *events: BaseModel, producer: str = ""
    ) -> list[str]:
        """Publish as the agent-registry (registry topic) or the gateway (tenancy topic) would."""
        producer = producer or ("agent-registry" if topic == REGISTRY_TOPIC else "gateway")
        return await super().publish(topic, tenant, stream_id, *events, producer=producer)

    async def _wait_doc(
        self, collection: str, doc_id: str, check: Any = None, timeout_s: float = 60
    ) -> dict[str, Any]:
        doc: dict[str, Any] = await eventually(
            lambda: self.runtime.db[collection].find_one({"_id": doc_id}),
            lambda d: d is not None and (check is None or check(d)),
            timeout_s=timeout_s,
            what=f"{collection}/{doc_id} arrived",
        )
        return doc

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

        async def get_run() -> dict[str, Any]:
            response = await self.client.get(f"/v1/tenants/{tenant}/runs/{run_id}")
            assert response.status_code == 200, response.text
            run: dict[str, Any] = response.json()
            return run

        return await eventually(
            get_run,
            lambda run: run["status"] in statuses,
            timeout_s=timeout_s,
            interval_s=0.05,
            what=f"run {run_id} reached {statuses}",
        )

    async def usage_events(self, run_id: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        """`usage.UsageRecorded` events of the run from the prefixed `ailab.usage.events` topic."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        found: list[dict[str, Any]] = []
        while asyncio.get_running_loop().time() < deadline:
            bodies = await read_events(
                self.settings.kafka_bootstrap_servers,
                self.settings.topic("ailab.usage.events"),
                until=10**9,
                timeout_s=2,
            )
            found = [
                body
                for body in bodies
                if body.get("event_type") == "usage.UsageRecorded" and body["payload"].get("run_id") == run_id
            ]
            if len(found) >= count:
                return found
        raise AssertionError(f"expected {count} usage events of {run_id}, got {len(found)}: {found}")


def settings_for(infra: Infra, **overrides: Any) -> Settings:
    # lookups of unknown agents/prompts/tools wait this long for the views; short unless a test says so
    overrides.setdefault("registry_view_wait_s", 1.0)
    return Settings(**infra_settings(infra, "test_runs_", "truns"), **overrides)


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
    async with running_app(SPEC, settings, base_url="http://executor", principal=HEADERS) as (app, client):
        yield Executor(app, settings, client, fake_openai)
