"""Idempotent data migrations of the registry (specification: InitialTenantSetup sample data)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from pymongo.errors import DuplicateKeyError

from ailab_runtime.errors import ApiError
from ailab_runtime.service import Runtime

from .application import handlers
from .domain.commands import CreateAgent, CreateProject, PublishAgentVersion

log = logging.getLogger(__name__)

SAMPLE_FLOW = {
    "nodes": [
        {"id": "input", "type": "input", "config": {}},
        {
            "id": "answer",
            "type": "llm",
            "config": {
                "provider": "local",
                "model": "local-echo",
                "prompt": "Answer briefly: {{input.message}}",
            },
        },
        {"id": "output", "type": "output", "config": {}},
    ],
    "edges": [{"source": "input", "target": "answer"}, {"source": "answer", "target": "output"}],
}

# Fixed ids: a retried migration finds what an interrupted one created instead of duplicating it.
SAMPLE_IDS = {"prj": "prj_demo_getting_started", "agt": "agt_demo_echo_assistant"}


async def already_applied(runtime: Runtime, migration_id: str) -> bool:
    return await runtime.db["migrations"].find_one({"_id": migration_id}) is not None


async def mark_applied(runtime: Runtime, migration_id: str) -> None:
    """Remember that a migration ran to its end (two instances may both finish it: the first wins)."""
    try:
        await runtime.db["migrations"].insert_one({"_id": migration_id, "applied_at": datetime.now(UTC)})
    except DuplicateKeyError:
        pass
    log.info("migration %s applied", migration_id)


async def demo_sample_data(runtime: Runtime) -> None:
    """001: a sample project, agent and published version in the `demo` tenant."""
    if await already_applied(runtime, "001-demo-sample-data"):
        return
    from .bootstrap import build_ports

    ports = replace(build_ports(runtime), new_id=lambda prefix: SAMPLE_IDS[prefix])
    actor = "migration:001"
    steps = (
        lambda: handlers.create_project(
            CreateProject(
                tenant_id="demo",
                actor=actor,
                name="Getting started",
                description="Sample project",
                tags=["sample"],
            ),
            ports,
        ),
        lambda: handlers.create_agent(
            CreateAgent(
                tenant_id="demo",
                actor=actor,
                name="Echo assistant",
                project_id=SAMPLE_IDS["prj"],
                description="Answers with the local deterministic provider",
            ),
            ports,
        ),
    )
    for step in steps:
        try:
            await step()
        except ApiError as exc:
            if exc.status != 409:
                raise
    if await ports.views.agent_version("demo", SAMPLE_IDS["agt"], 1) is None:
        await handlers.publish_agent_version(
            PublishAgentVersion(
                tenant_id="demo",
                agent_id=SAMPLE_IDS["agt"],
                actor=actor,
                flow_graph=SAMPLE_FLOW,
                config={"temperature": 0},
                changelog="Sample version",
            ),
            ports,
        )
    await mark_applied(runtime, "001-demo-sample-data")
