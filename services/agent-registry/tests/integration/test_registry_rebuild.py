"""Rebuilt read models equal the inline-built ones, from the API, from the CLI, and from old events."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

import pytest

from agent_registry.domain.model import project_stream
from ailab_contracts import EventEnvelope

from .conftest import Registry

pytestmark = pytest.mark.integration


async def build_history(registry: Registry) -> None:
    """Every event type, several tenants, updates and deletes."""
    for _ in range(2):
        tenant = registry.tenant()
        kept = await registry.project(tenant, tags=["a"], metadata={"n": 1})
        gone = await registry.project(tenant)
        await registry.client.put(f"/v1/tenants/{tenant}/projects/{kept['id']}", json={"status": "inactive"})
        await registry.client.delete(f"/v1/tenants/{tenant}/projects/{gone['id']}")
        agent = await registry.agent(tenant, project_id=kept["id"], tags=["t"])
        await registry.client.put(f"/v1/tenants/{tenant}/agents/{agent['id']}", json={"description": "d"})
        await registry.version(tenant, agent["id"], config={"k": [1, 2.5, None]}, changelog="one")
        await registry.version(tenant, agent["id"])
        await registry.client.put(
            f"/v1/tenants/{tenant}/agents/{agent['id']}/versions/1", json={"status": "deprecated"}
        )
        dropped = await registry.agent(tenant)
        await registry.version(tenant, dropped["id"])
        await registry.client.delete(f"/v1/tenants/{tenant}/agents/{dropped['id']}")


async def settled(registry: Registry) -> None:
    # project whatever a concurrent writer left unprojected, so the snapshot is complete
    await registry.runtime.projector.catch_up(older_than=timedelta(0))


async def test_rebuild_projections_reproduces_the_views(registry: Registry) -> None:
    await build_history(registry)
    await settled(registry)
    before = await registry.views()
    assert all(before[name] for name in before), "every view has documents"
    replayed = await registry.runtime.projector.rebuild()
    assert replayed > 20
    assert await registry.views() == before


async def test_cli_rebuild_reproduces_the_views(registry: Registry) -> None:
    await build_history(registry)
    await settled(registry)
    before = await registry.views()
    env = {
        **os.environ,
        "MONGODB_URI": registry.settings.mongodb_uri,
        "MONGODB_DATABASE": registry.settings.database_name,
        "KAFKA_BOOTSTRAP_SERVERS": registry.settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": registry.settings.topic_prefix,
        "ENVIRONMENT": "test",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent_registry",
        "rebuild-projections",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, stderr.decode()
    assert b"rebuilt projections" in stdout
    assert await registry.views() == before


async def test_v1_project_events_are_upcast_when_projected(registry: Registry) -> None:
    tenant = registry.tenant()
    stream = project_stream(tenant, "prj_legacy")
    legacy = EventEnvelope(
        event_type="registry.ProjectCreated",
        schema_version=1,
        stream_id=stream,
        stream_version=1,
        tenant_id=tenant,
        producer="agent-registry",
        payload={"project_id": "prj_legacy", "name": "Old", "description": None, "created_by": "u0"},
    )
    commit = await registry.runtime.store.append(stream, 0, [legacy])
    await registry.runtime.projector.apply_commit(commit)
    got = await registry.client.get(f"/v1/tenants/{tenant}/projects/prj_legacy")
    assert got.status_code == 200
    assert (got.json()["tags"], got.json()["metadata"], got.json()["name"]) == ([], {}, "Old")
    before = await registry.views()
    await registry.runtime.projector.rebuild()
    assert await registry.views() == before


async def test_a_failed_inline_projection_is_caught_up(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_registry.projections import ProjectsProjection

    async def broken(self: ProjectsProjection, envelope: object, event: object) -> None:
        raise RuntimeError("view store unavailable")

    tenant = registry.tenant()
    with monkeypatch.context() as patch:
        patch.setattr(ProjectsProjection, "apply", broken)
        created = await registry.client.post(f"/v1/tenants/{tenant}/projects", json={"name": "durable"})
        assert created.status_code == 201, "the commit is durable even though its projection failed"
        path = f"/v1/tenants/{tenant}/projects/{created.json()['id']}"
        assert (await registry.client.get(path)).status_code == 404
    await registry.runtime.projector.catch_up(older_than=timedelta(0))
    got = await registry.client.get(path)
    assert got.status_code == 200 and got.json() == created.json()
