"""If-Match, optimistic concurrency on the streams and Idempotency-Key replays."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from agent_registry.domain.model import project_stream
from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.registry import ProjectUpdated

from .conftest import FLOW, Registry

pytestmark = pytest.mark.integration


async def test_stale_if_match_is_412(registry: Registry) -> None:
    tenant = registry.tenant()
    project = await registry.project(tenant)
    path = f"/v1/tenants/{tenant}/projects/{project['id']}"
    assert (
        await registry.client.put(path, json={"name": "v2"}, headers={"If-Match": '"1"'})
    ).status_code == 200
    stale = await registry.client.put(path, json={"name": "v3"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.json()["error"]["details"] == {"current_etag": '"2"'}
    assert (await registry.client.delete(path, headers={"If-Match": '"1"'})).status_code == 412
    assert (await registry.client.get(path)).json()["name"] == "v2"
    assert (
        await registry.client.put(path, json={"name": "v3"}, headers={"If-Match": "*"})
    ).status_code == 200

    agent = await registry.agent(tenant)
    await registry.version(tenant, agent["id"])
    versions = f"/v1/tenants/{tenant}/agents/{agent['id']}/versions/1"
    stale_version = await registry.client.put(
        versions, json={"status": "deprecated"}, headers={"If-Match": '"9"'}
    )
    assert stale_version.status_code == 412
    agent_path = f"/v1/tenants/{tenant}/agents/{agent['id']}"
    stale_agent = await registry.client.put(agent_path, json={"name": "n"}, headers={"If-Match": '"1"'})
    assert stale_agent.status_code == 412, "publishing a version moved the agent's version"


async def test_concurrent_puts_with_the_same_if_match_have_one_winner(registry: Registry) -> None:
    tenant = registry.tenant()
    project = await registry.project(tenant)
    path = f"/v1/tenants/{tenant}/projects/{project['id']}"
    responses = await asyncio.gather(
        *(
            registry.client.put(path, json={"name": f"writer {i}"}, headers={"If-Match": '"1"'})
            for i in range(5)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412}
    winner = next(r for r in responses if r.status_code == 200).json()
    current = (await registry.client.get(path)).json()
    assert current == winner and current["version"] == 2
    for loser in (r for r in responses if r.status_code != 200):
        assert loser.json()["error"]["code"] in {"conflict", "precondition_failed"}


async def test_a_write_behind_a_stale_view_is_409(registry: Registry) -> None:
    tenant = registry.tenant()
    project = await registry.project(tenant)
    # another writer appended to the stream and its projection has not run yet
    stream = project_stream(tenant, project["id"])
    other = new_envelope(
        REGISTRY,
        ProjectUpdated(project_id=project["id"], name="other", updated_by="u2"),
        stream_id=stream,
        stream_version=2,
        tenant_id=tenant,
        producer="agent-registry",
    )
    await registry.runtime.store.append(stream, 1, [other])
    path = f"/v1/tenants/{tenant}/projects/{project['id']}"
    conflict = await registry.client.put(path, json={"name": "mine"}, headers={"If-Match": '"1"'})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    await registry.runtime.projector.catch_up(older_than=timedelta(0))
    assert (await registry.client.get(path)).json()["name"] == "other"


async def test_concurrent_publishes_never_share_a_version_number(registry: Registry) -> None:
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    base = f"/v1/tenants/{tenant}/agents/{agent['id']}/versions"
    responses = await asyncio.gather(
        *(registry.client.post(base, json={"flow_graph": FLOW}) for _ in range(4))
    )
    ok = [r.json()["version"] for r in responses if r.status_code == 201]
    assert ok and len(ok) == len(set(ok))
    assert all(r.status_code in (201, 409) for r in responses)
    listed = (await registry.client.get(base)).json()["items"]
    assert [v["version"] for v in listed] == list(range(1, len(ok) + 1))


async def test_idempotency_key_replays_the_first_response(registry: Registry) -> None:
    tenant = registry.tenant()
    base = f"/v1/tenants/{tenant}/projects"
    body = {"name": "Once", "tags": ["a"]}
    first = await registry.client.post(base, json=body, headers={"Idempotency-Key": "k-1"})
    again = await registry.client.post(base, json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert (
        again.headers["etag"] == first.headers["etag"]
        and again.headers["location"] == first.headers["location"]
    )
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert len((await registry.client.get(base)).json()["items"]) == 1

    different = await registry.client.post(base, json={"name": "Other"}, headers={"Idempotency-Key": "k-1"})
    assert different.status_code == 422
    assert different.json()["error"]["code"] == "idempotency_key_reused"
    assert len((await registry.client.get(base)).json()["items"]) == 1

    other_key = await registry.client.post(base, json=body, headers={"Idempotency-Key": "k-2"})
    assert other_key.status_code == 201 and other_key.json()["id"] != first.json()["id"]


async def test_idempotent_publish_and_failed_requests_free_the_key(registry: Registry) -> None:
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    base = f"/v1/tenants/{tenant}/agents/{agent['id']}/versions"
    bad = {"flow_graph": {"nodes": []}}
    assert (await registry.client.post(base, json=bad, headers={"Idempotency-Key": "v"})).status_code == 422
    good = {"flow_graph": FLOW}
    first = await registry.client.post(base, json=good, headers={"Idempotency-Key": "v"})
    assert first.status_code == 201, "a failed request must not keep its key"
    replay = await registry.client.post(base, json=good, headers={"Idempotency-Key": "v"})
    assert replay.status_code == 201 and replay.json() == first.json()
    assert [v["version"] for v in (await registry.client.get(base)).json()["items"]] == [1]
