"""`python -m <service> rebuild-projections` replays the event store into read models identical to
the ones the live services built."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from scripts.system import restart_service, stop_service
from tests.e2e.conftest import System
from tests.e2e.helpers import FLOW, client, invite_and_join, new_tenant_with_admin

pytestmark = pytest.mark.e2e

VIEWS = {
    "gateway": ["tenants", "users", "api_keys"],
    "agent-registry": [
        "projects",
        "agents",
        "agent_versions",
        "artifacts",
        "prompts",
        "prompt_versions",
        "tools",
        "datasets",
        "dataset_artifacts",
        "experiments",
        "experiment_runs",
    ],
}


async def snapshot(uri: str, database: str, collections: list[str]) -> dict[str, list[dict[str, Any]]]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    try:
        return {c: [d async for d in mongo[database][c].find({}).sort("_id", 1)] for c in collections}
    finally:
        await mongo.close()


def test_rebuilt_views_equal_live_views(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin)
    owner = client(system.url, owner_token)
    invite_and_join(system.url, owner, tenant_id, "developer")
    key_id = owner.post(f"/v1/tenants/{tenant_id}/api-keys", json={"name": "k"}).json()["key_id"]
    owner.delete(f"/v1/tenants/{tenant_id}/api-keys/{key_id}")
    project_id = owner.post(f"/v1/tenants/{tenant_id}/projects", json={"name": "p", "tags": ["a"]}).json()[
        "id"
    ]
    owner.put(f"/v1/tenants/{tenant_id}/projects/{project_id}", json={"description": "changed"})
    agent_id = owner.post(
        f"/v1/tenants/{tenant_id}/agents", json={"name": "a", "project_id": project_id}
    ).json()["id"]
    owner.post(f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions", json={"flow_graph": FLOW})
    owner.put(f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions/1", json={"status": "deprecated"})
    admin.put(f"/v1/admin/tenants/{tenant_id}", json={"plan": "enterprise"})
    prompt_id = owner.post(f"/v1/tenants/{tenant_id}/prompts", json={"name": "p"}).json()["id"]
    owner.post(
        f"/v1/tenants/{tenant_id}/prompts/{prompt_id}/versions",
        json={
            "template": "Hi {{ who }}",
            "variables": [{"name": "who", "type": "string"}],
            "labels": ["production"],
        },
    )
    owner.post(
        f"/v1/tenants/{tenant_id}/tools", json={"name": "calc", "kind": "builtin", "builtin": "calculator"}
    )
    dataset_id = owner.post(f"/v1/tenants/{tenant_id}/datasets", json={"name": "d"}).json()["id"]
    owner.post(
        f"/v1/tenants/{tenant_id}/datasets/{dataset_id}/upload",
        content=b'{"input": "1", "expected": "1"}\n',
        headers={"Content-Type": "application/x-ndjson"},
    )
    experiment = owner.post(
        f"/v1/tenants/{tenant_id}/experiments",
        json={
            "name": "e",
            "target": {"type": "agent_version", "agent_id": agent_id, "version": 1},
            "dataset_id": dataset_id,
            "evaluators": [{"name": "exact", "type": "exact_match"}],
        },
    )
    assert experiment.status_code == 201, experiment.text
    assert (
        owner.post(f"/v1/tenants/{tenant_id}/experiments/{experiment.json()['id']}/start").status_code == 202
    )

    for service, package in (("gateway", "gateway"), ("agent-registry", "agent_registry")):
        stop_service(system.running, service)  # no live writer while the views are replaced
        try:
            database = system.database(service)
            before = asyncio.run(snapshot(system.infra.mongodb_uri, database, VIEWS[service]))
            env = {**os.environ, **system.running.envs[service]}
            result = subprocess.run(
                [sys.executable, "-m", package, "rebuild-projections"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
            assert "rebuilt projections from" in result.stdout
            after = asyncio.run(snapshot(system.infra.mongodb_uri, database, VIEWS[service]))
            for name in VIEWS[service]:
                assert after[name] == before[name], f"{service}.{name} differs after rebuild"
            assert sum(len(v) for v in before.values()) > 0
        finally:
            restart_service(system.running, service)
    assert owner.get(f"/v1/tenants/{tenant_id}/projects/{project_id}").json()["description"] == "changed"
