"""Use cases over the in-memory fakes: state comes back folded, streams guard concurrency."""

from __future__ import annotations

import pytest

from agent_registry.adapters.memory import InMemoryRegistry, sequential_ids
from agent_registry.application import handlers, queries
from agent_registry.application.ports import ListFilter, RegistryPorts
from agent_registry.domain.commands import (
    CreateAgent,
    CreateProject,
    DeleteAgent,
    Precondition,
    PublishAgentVersion,
    UpdateAgentVersion,
    UpdateProject,
)
from agent_registry.domain.errors import NotFound, PreconditionFailed
from ailab_runtime.errors import ApiError

pytestmark = pytest.mark.unit

FLOW = {"nodes": [{"id": "in", "type": "input"}], "edges": []}


@pytest.fixture
def fake() -> InMemoryRegistry:
    return InMemoryRegistry()


@pytest.fixture
def ports(fake: InMemoryRegistry) -> RegistryPorts:
    return RegistryPorts(views=fake, recorder=fake, new_id=sequential_ids())


async def test_project_lifecycle(ports: RegistryPorts, fake: InMemoryRegistry) -> None:
    created = await handlers.create_project(CreateProject("t1", "u1", "P", tags=["x"]), ports)
    assert (created.id, created.version) == ("prj_0001", 1)
    assert fake.streams["project:t1:prj_0001"][0].event_type == "registry.ProjectCreated"
    updated = await handlers.update_project(
        UpdateProject("t1", created.id, "u2", {"status": "archived"}, Precondition(frozenset({1}))), ports
    )
    assert (updated.status, updated.version) == ("archived", 2)
    assert await queries.get_project(ports.views, "t1", created.id) == updated
    unchanged = await handlers.update_project(
        UpdateProject("t1", created.id, "u2", {"status": "archived"}), ports
    )
    assert unchanged.version == 2 and len(fake.streams["project:t1:prj_0001"]) == 2
    with pytest.raises(PreconditionFailed):
        await handlers.update_project(
            UpdateProject("t1", created.id, "u2", {"name": "x"}, Precondition(frozenset({1}))), ports
        )


async def test_tenants_do_not_see_each_other(ports: RegistryPorts) -> None:
    created = await handlers.create_project(CreateProject("t1", "u1", "P"), ports)
    with pytest.raises(NotFound):
        await queries.get_project(ports.views, "t2", created.id)
    assert (await queries.list_projects(ports.views, "t2", ListFilter()))[0] == []


async def test_versions_are_numbered_per_agent_and_hidden_after_delete(ports: RegistryPorts) -> None:
    agent = await handlers.create_agent(CreateAgent("t1", "u1", "A"), ports)
    numbers = [
        (await handlers.publish_agent_version(PublishAgentVersion("t1", agent.id, "u1", FLOW), ports)).number
        for _ in range(3)
    ]
    assert numbers == [1, 2, 3]
    assert (await queries.get_agent(ports.views, "t1", agent.id)).latest_version == 3
    content = await queries.get_agent_version_file(ports.views, "t1", agent.id, 2, "flow-graph.json")
    assert content["nodes"][0]["id"] == "in"
    with pytest.raises(NotFound):
        await queries.get_agent_version_file(ports.views, "t1", agent.id, 2, "secrets.json")
    updated = await handlers.update_agent_version(
        UpdateAgentVersion("t1", agent.id, 1, "u1", {"status": "deprecated"}), ports
    )
    assert updated.status == "deprecated"
    await handlers.delete_agent(DeleteAgent("t1", agent.id, "u1"), ports)
    with pytest.raises(NotFound):
        await queries.get_agent_version(ports.views, "t1", agent.id, 1)
    with pytest.raises(NotFound):
        await handlers.publish_agent_version(PublishAgentVersion("t1", agent.id, "u1", FLOW), ports)


async def test_a_stale_expected_version_is_a_conflict(fake: InMemoryRegistry) -> None:
    from ailab_contracts.events.registry import ProjectUpdated

    await fake.record(
        stream_id="s",
        expected_version=0,
        tenant_id="t",
        events=[ProjectUpdated(project_id="p", updated_by="u")],
    )
    with pytest.raises(ApiError) as err:
        await fake.record(
            stream_id="s",
            expected_version=0,
            tenant_id="t",
            events=[ProjectUpdated(project_id="p", updated_by="u")],
        )
    assert err.value.status == 409
