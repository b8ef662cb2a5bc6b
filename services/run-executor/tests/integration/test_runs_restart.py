"""Honest crash recovery: runs a dead executor process left `queued`/`running` are failed with
`executor_restarted` when an executor starts (with the totals their metered usage adds up to),
while runs of a live executor are left alone; a graceful shutdown fails runs in flight with
`executor_shutdown`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.registry import AgentCreated, AgentVersionPublished, FlowGraph
from ailab_contracts.events.runs import RunQueued, RunStarted, run_stream
from ailab_contracts.events.usage import UsageRecorded
from ailab_runtime.service import Runtime, create_app
from run_executor.adapters.mongo_runs import EXECUTOR_INSTANCES, RUN_CLAIMS
from run_executor.bootstrap import SPEC
from tests.support.infra import Infra
from tests.support.service_app import wait_for_mongo

from .conftest import HEADERS, settings_for

pytestmark = pytest.mark.integration


def queued(run_id: str, at: datetime) -> RunQueued:
    return RunQueued(
        run_id=run_id,
        agent_id="agt_gone",
        agent_version=1,
        inputs={"q": "hi"},
        timeout_s=120,
        max_steps=100,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        created_by="usr_test",
        queued_at=at,
    )


async def leave_behind(runtime: Runtime, tenant: str, run_id: str, owner: str, *, started: bool) -> None:
    """What a process leaves when it dies mid-run: its claim, RunQueued (+ RunStarted), some usage."""
    at = datetime.now(UTC) - timedelta(minutes=5)
    await runtime.db[RUN_CLAIMS].insert_one({"_id": run_id, "tenant_id": tenant, "instance_id": owner})
    events: list[Any] = [queued(run_id, at)] + ([RunStarted(run_id=run_id, started_at=at)] if started else [])
    await runtime.record(
        stream_id=run_stream(tenant, run_id), expected_version=0, tenant_id=tenant, events=events
    )
    if started:
        common: dict[str, Any] = {
            "tenant_id": tenant,
            "user_id": "usr_test",
            "run_id": run_id,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "request_id": "req_1",
            "timestamp": at,
        }
        await runtime.record(
            stream_id=f"usage:{tenant}:{run_id}:1",
            expected_version=0,
            tenant_id=tenant,
            events=[
                UsageRecorded(meter="requests", quantity=Decimal(1), **common),
                UsageRecorded(
                    meter="tokens_in", quantity=Decimal(40), cost_usd_estimate=Decimal("0.000006"), **common
                ),
                UsageRecorded(
                    meter="tokens_out", quantity=Decimal(7), cost_usd_estimate=Decimal("0.0000042"), **common
                ),
            ],
        )


async def test_start_up_fails_the_runs_of_a_dead_executor_only(infra: Infra) -> None:
    await wait_for_mongo(infra.mongodb_uri)
    settings = settings_for(infra)
    app = create_app(SPEC, settings)
    runtime: Runtime = app.state.runtime
    await runtime.prepare_database()
    tenant = "ten_restart"
    await leave_behind(runtime, tenant, "run_orphan_running", "exe_dead", started=True)
    await leave_behind(runtime, tenant, "run_orphan_queued", "exe_dead", started=False)
    # a live executor elsewhere (fresh heartbeat) keeps its run
    await runtime.db[EXECUTOR_INSTANCES].insert_one({"_id": "exe_alive", "heartbeat_at": datetime.now(UTC)})
    await leave_behind(runtime, tenant, "run_alive", "exe_alive", started=True)

    headers = {"X-Internal-Token": settings.internal_token, **HEADERS}
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://executor", headers=headers
            ) as client:
                running = (await client.get(f"/v1/tenants/{tenant}/runs/run_orphan_running")).json()
                assert running["status"] == "failed", running
                assert running["error"]["code"] == "executor_restarted"
                totals = running["totals"]
                assert (totals["tokens_in"], totals["tokens_out"], totals["provider_calls"]) == (40, 7, 1)
                assert Decimal(totals["cost_usd"]) == Decimal("0.0000102")
                queued_run = (await client.get(f"/v1/tenants/{tenant}/runs/run_orphan_queued")).json()
                assert (
                    queued_run["status"] == "failed" and queued_run["error"]["code"] == "executor_restarted"
                )
                alive = (await client.get(f"/v1/tenants/{tenant}/runs/run_alive")).json()
                assert alive["status"] == "running"
                # the live owner's run cannot be cancelled from here either
                refused = await client.patch(
                    f"/v1/tenants/{tenant}/runs/run_alive", json={"status": "cancelled"}
                )
                assert (
                    refused.status_code == 409 and refused.json()["error"]["code"] == "run_on_other_executor"
                )
                events = await runtime.store.read_stream(run_stream(tenant, "run_orphan_running"))
                assert [e.event_type for e in events] == [
                    "runs.RunQueued",
                    "runs.RunStarted",
                    "runs.RunFailed",
                ]
    finally:
        cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
        await cleanup.drop_database(settings.database_name)
        await cleanup.close()


async def test_graceful_shutdown_fails_runs_in_flight(infra: Infra) -> None:
    await wait_for_mongo(infra.mongodb_uri)
    settings = settings_for(infra)
    app = create_app(SPEC, settings)
    runtime: Runtime = app.state.runtime
    tenant = "ten_shutdown"
    headers = {"X-Internal-Token": settings.internal_token, **HEADERS}
    flow = {
        "nodes": [
            {
                "id": "slow",
                "type": "llm",
                "config": {"prompt": "a b", "metadata": {"local_chunk_delay_s": 30}},
            }
        ]
    }
    try:
        async with app.router.lifespan_context(app):
            # seed the executor's registry view directly through its consumer handler
            views = runtime.extras["registry_views"]
            for version, event in enumerate(
                (
                    AgentCreated(agent_id="agt_s", name="A", created_by="usr_test"),
                    AgentVersionPublished(
                        agent_id="agt_s",
                        version=1,
                        flow_graph=FlowGraph.model_validate(flow),
                        created_by="usr_test",
                    ),
                ),
                start=1,
            ):
                envelope = new_envelope(
                    REGISTRY,
                    event,
                    stream_id=f"agent:{tenant}:agt_s",
                    stream_version=version,
                    tenant_id=tenant,
                    producer="t",
                )
                await views.apply(envelope, event)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://executor", headers=headers
            ) as client:
                run = (await client.post(f"/v1/tenants/{tenant}/runs", json={"agent_id": "agt_s"})).json()
                logs_url = f"/v1/tenants/{tenant}/runs/{run['id']}/logs"
                messages: list[str] = []
                for _ in range(400):  # until the provider stream is under way
                    messages = [line["message"] for line in (await client.get(logs_url)).json()["items"]]
                    if "node slow (llm) started" in messages:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError(f"the run never reached its llm node: {messages}")
                await asyncio.sleep(0.3)
        check: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
        doc = await check[settings.database_name]["runs"].find_one({"_id": run["id"]})
        await check.close()
        assert doc is not None and doc["status"] == "failed"
        assert doc["error"]["code"] == "executor_shutdown" and doc["totals"]["tokens_in"] == 2
    finally:
        cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
        await cleanup.drop_database(settings.database_name)
        await cleanup.close()
