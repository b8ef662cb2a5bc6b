"""A run or experiment example that reaches the executor before the registry event creating its
agent version does waits for the executor's view (up to REGISTRY_VIEW_WAIT_S, here its default 5 s)
instead of failing; a really unknown agent still fails with the same error code, after the wait."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from ailab_contracts.events.registry import AgentCreated, AgentVersionPublished, FlowGraph
from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from run_executor.adapters.experiment_target import EngineTargetRunner

from .conftest import Executor
from .test_runs_local import FLOW  # an llm node on the local provider, then an output

pytestmark = pytest.mark.integration

EXECUTOR_SETTINGS = {"registry_view_wait_s": 5.0}
WAIT_S = 5.0


def new_agent_id() -> str:
    return f"agt_{uuid.uuid4().hex[:12]}"


async def publish_agent(executor: Executor, tenant: str, agent_id: str, pause_s: float = 0.3) -> None:
    """AgentCreated, then (a moment later: the agent is known without a version) version 1."""
    stream = f"agent:{tenant}:{agent_id}"
    await executor.publish(
        REGISTRY_TOPIC,
        tenant,
        stream,
        AgentCreated(agent_id=agent_id, project_id=None, name="Late", created_by="usr_test"),
    )
    await asyncio.sleep(pause_s)
    await executor.publish(
        REGISTRY_TOPIC,
        tenant,
        stream,
        AgentVersionPublished(
            agent_id=agent_id, version=1, flow_graph=FlowGraph.model_validate(FLOW), created_by="usr_test"
        ),
    )


def target_runner(executor: Executor) -> EngineTargetRunner:
    extras = executor.runtime.extras
    run_executor = extras["runs"].executor
    return EngineTargetRunner(run_executor.deps, extras["registry_views"], run_executor)


async def test_a_run_requested_before_its_agent_version_arrives_waits_and_succeeds(
    executor: Executor,
) -> None:
    tenant, agent_id = executor.tenant(), new_agent_id()
    request = asyncio.create_task(
        executor.client.post(
            f"/v1/tenants/{tenant}/runs", json={"agent_id": agent_id, "inputs": {"message": "late"}}
        )
    )
    await asyncio.sleep(0.5)
    assert not request.done(), (await request).text  # without the wait it would be a 422 by now
    await publish_agent(executor, tenant, agent_id)
    response = await request
    assert response.status_code == 201, response.text
    assert response.json()["agent_version"] == 1
    run = await executor.wait(tenant, response.json()["id"])
    assert run["status"] == "succeeded" and run["output"] == {"answer": "echo: Say late"}, run


async def test_an_experiment_target_published_late_runs_and_an_unknown_one_fails_after_the_wait(
    executor: Executor,
) -> None:
    tenant, agent_id = executor.tenant(), new_agent_id()
    runner = target_runner(executor)

    async def run_target(target_agent: str) -> tuple[float, object]:
        started = time.monotonic()
        result = await runner.run(
            tenant,
            {"type": "agent_version", "agent_id": target_agent, "version": 1},
            {"message": "example"},
            {},
            asyncio.Event(),
        )
        return time.monotonic() - started, result

    late = asyncio.create_task(run_target(agent_id))
    missing_agent = new_agent_id()
    unknown = asyncio.create_task(run_target(missing_agent))
    await asyncio.sleep(0.5)
    assert not late.done()
    await publish_agent(executor, tenant, agent_id)
    _, result = await late
    assert result.error is None and result.output == {"answer": "echo: Say example"}, result  # type: ignore[attr-defined]

    waited, missing = await unknown
    assert missing.error is not None and missing.error.code == "target_not_found", missing  # type: ignore[attr-defined]
    assert WAIT_S <= waited < WAIT_S + 3, waited
    # the experiment's next example of the same unknown target does not wait again
    again, missing = await run_target(missing_agent)
    assert missing.error is not None and missing.error.code == "target_not_found", missing  # type: ignore[attr-defined]
    assert again < 1.0, again


async def test_an_unknown_agent_still_fails_with_the_same_code_after_the_wait(executor: Executor) -> None:
    tenant = executor.tenant()
    url = f"/v1/tenants/{tenant}/runs"
    started = time.monotonic()
    unknown, no_version = await asyncio.gather(
        executor.client.post(url, json={"agent_id": new_agent_id()}),
        executor.client.post(url, json={"agent_id": await _agent_without_version(executor, tenant)}),
    )
    waited = time.monotonic() - started
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_reference"
    assert unknown.json()["error"]["details"][0]["loc"] == ["body", "agent_id"]
    assert no_version.status_code == 422 and no_version.json()["error"]["code"] == "agent_has_no_version"
    assert WAIT_S <= waited < WAIT_S + 3, waited


async def _agent_without_version(executor: Executor, tenant: str) -> str:
    agent_id = new_agent_id()
    await executor.publish(
        REGISTRY_TOPIC,
        tenant,
        f"agent:{tenant}:{agent_id}",
        AgentCreated(agent_id=agent_id, project_id=None, name="Empty", created_by="usr_test"),
    )
    await executor._wait_doc("registry_agents", agent_id)
    return agent_id
