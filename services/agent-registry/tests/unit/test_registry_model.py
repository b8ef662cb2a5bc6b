"""Domain rules of projects, agents and versions, and the folds the projections persist."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent_registry.domain.commands import (
    CreateAgent,
    CreateProject,
    DeleteAgent,
    DeleteProject,
    Precondition,
    PublishAgentVersion,
    UpdateAgent,
    UpdateAgentVersion,
    UpdateProject,
)
from agent_registry.domain.errors import (
    AgentArchived,
    InvalidFlowGraph,
    InvalidReference,
    InvalidValue,
    NotFound,
    PreconditionFailed,
)
from agent_registry.domain.lifecycle import normalize_tags
from agent_registry.domain.model import (
    Agent,
    EventMeta,
    Project,
    artifact_path,
    decide_create_agent,
    decide_create_project,
    decide_delete_agent,
    decide_delete_project,
    decide_publish_version,
    decide_update_agent,
    decide_update_project,
    decide_update_version,
    evolve_agent,
    evolve_agent_version,
    evolve_project,
)
from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.registry import AgentVersionUpdated, ProjectUpdated

pytestmark = pytest.mark.unit

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
FLOW = {
    "nodes": [{"id": "in", "type": "input"}, {"id": "llm", "type": "llm"}],
    "edges": [{"source": "in", "target": "llm"}],
}


def meta(n: int) -> EventMeta:
    return EventMeta(n, T0)


def project() -> Project:
    event = decide_create_project("prj_1", CreateProject(tenant_id="t1", actor="u1", name="P", tags=["a"]))
    state = evolve_project(None, "t1", event, meta(1))
    assert state is not None
    return state


def agent(latest: int = 0, status: str | None = None) -> Agent:
    state = evolve_agent(
        None, "t1", decide_create_agent("agt_1", CreateAgent("t1", "u1", "A"), None), meta(1)
    )
    assert state is not None
    for _ in range(latest):
        event = decide_publish_version(state, PublishAgentVersion("t1", "agt_1", "u1", FLOW))
        state = evolve_agent(state, "t1", event, meta(state.version + 1)) or state
    if status:
        update = decide_update_agent(state, UpdateAgent("t1", "agt_1", "u1", {"status": status}), None)
        assert update is not None
        state = evolve_agent(state, "t1", update, meta(state.version + 1)) or state
    return state


def test_event_meta_truncates_to_milliseconds_like_mongodb() -> None:
    env = new_envelope(
        REGISTRY,
        ProjectUpdated(project_id="p", updated_by="u"),
        stream_id="s",
        stream_version=3,
        tenant_id="t",
        producer="x",
    )
    env = env.model_copy(update={"occurred_at": T0})
    m = EventMeta.of(env)
    assert m.stream_version == 3
    assert m.occurred_at.microsecond == 678000


def test_tags_are_trimmed_and_deduplicated_in_order() -> None:
    assert normalize_tags([" b", "a", "b", "", "a "]) == ["b", "a"]


def test_created_project_is_active_and_timestamps_come_from_the_event() -> None:
    p = project()
    assert (p.status, p.version, p.created_at, p.updated_at, p.created_by) == ("active", 1, T0, T0, "u1")


def test_update_records_only_changed_fields_and_nothing_when_unchanged() -> None:
    p = project()
    event = decide_update_project(p, UpdateProject("t1", "prj_1", "u2", {"name": "P", "tags": ["a", "b"]}))
    assert event is not None
    assert event.model_dump(exclude_none=True) == {
        "project_id": "prj_1",
        "tags": ["a", "b"],
        "updated_by": "u2",
    }
    assert (
        decide_update_project(p, UpdateProject("t1", "prj_1", "u2", {"name": "P", "description": None}))
        is None
    )


def test_precondition_must_name_the_current_version() -> None:
    p = project()
    ok = UpdateProject("t1", "prj_1", "u1", {"name": "Q"}, Precondition(frozenset({1})))
    assert decide_update_project(p, ok) is not None
    with pytest.raises(PreconditionFailed) as err:
        decide_update_project(
            p, UpdateProject("t1", "prj_1", "u1", {"name": "Q"}, Precondition(frozenset({7})))
        )
    assert err.value.details == {"current_etag": '"1"'}
    star = DeleteProject("t1", "prj_1", "u1", Precondition(any_version=True))
    assert decide_delete_project(p, star).deleted_by == "u1"


def test_deleted_project_cannot_change_or_be_deleted_again() -> None:
    p = project()
    deleted = evolve_project(p, "t1", decide_delete_project(p, DeleteProject("t1", "prj_1", "u1")), meta(2))
    assert deleted is not None and deleted.deleted and deleted.version == 2
    with pytest.raises(NotFound):
        decide_update_project(deleted, UpdateProject("t1", "prj_1", "u1", {"name": "again"}))
    with pytest.raises(NotFound):
        decide_delete_project(deleted, DeleteProject("t1", "prj_1", "u1"))
    with pytest.raises(NotFound):
        decide_delete_project(None, DeleteProject("t1", "prj_1", "u1"))


def test_metadata_must_be_storable() -> None:
    with pytest.raises(InvalidValue) as err:
        decide_create_project("p", CreateProject("t1", "u1", "P", metadata={"a.b": 1}))
    assert err.value.problems[0]["loc"] == ["body", "metadata", "a.b"]


def test_agent_project_must_be_a_live_project_of_the_same_tenant() -> None:
    p = project()
    cmd = CreateAgent("t1", "u1", "A", project_id="prj_1")
    assert decide_create_agent("agt_1", cmd, p).project_id == "prj_1"
    with pytest.raises(InvalidReference):
        decide_create_agent("agt_1", cmd, None)
    with pytest.raises(InvalidReference):
        decide_create_agent("agt_1", CreateAgent("t2", "u1", "A", project_id="prj_1"), p)
    deleted = evolve_project(p, "t1", decide_delete_project(p, DeleteProject("t1", "prj_1", "u1")), meta(2))
    with pytest.raises(InvalidReference):
        decide_create_agent("agt_1", cmd, deleted)


def test_versions_are_numbered_after_the_latest() -> None:
    a = agent(latest=2)
    assert a.latest_version == 2 and a.version == 3
    event = decide_publish_version(a, PublishAgentVersion("t1", "agt_1", "u1", FLOW, {"k": 1}, "third"))
    assert (event.version, event.config, event.changelog) == (3, {"k": 1}, "third")


def test_publishing_needs_a_live_unarchived_agent_and_a_valid_graph() -> None:
    with pytest.raises(NotFound):
        decide_publish_version(None, PublishAgentVersion("t1", "agt_1", "u1", FLOW))
    a = agent()
    deleted = evolve_agent(a, "t1", decide_delete_agent(a, DeleteAgent("t1", "agt_1", "u1")), meta(2))
    with pytest.raises(NotFound):
        decide_publish_version(deleted, PublishAgentVersion("t1", "agt_1", "u1", FLOW))
    with pytest.raises(AgentArchived):
        decide_publish_version(agent(status="archived"), PublishAgentVersion("t1", "agt_1", "u1", FLOW))
    with pytest.raises(InvalidFlowGraph):
        decide_publish_version(a, PublishAgentVersion("t1", "agt_1", "u1", {"nodes": [], "edges": []}))
    with pytest.raises(InvalidValue):
        decide_publish_version(a, PublishAgentVersion("t1", "agt_1", "u1", FLOW, {"x": float("nan")}))


def test_a_published_version_carries_its_artifact_paths() -> None:
    a = agent()
    event = decide_publish_version(a, PublishAgentVersion("t1", "agt_1", "u1", FLOW))
    v = evolve_agent_version(None, "t1", event, meta(2))
    assert v is not None
    assert v.id == "agt_1:v1" and v.status == "active"
    assert v.artifacts == [
        artifact_path("t1", "agt_1", 1, "flow-graph.json"),
        artifact_path("t1", "agt_1", 1, "config.json"),
    ]
    assert v.artifacts[0] == "tenants/t1/agents/agt_1/versions/1/flow-graph.json"
    assert v.flow_graph["nodes"][0] == {"id": "in", "type": "input", "config": {}}


def test_version_updates_change_status_and_changelog_and_move_the_agent_stream() -> None:
    a = agent(latest=1)
    v = evolve_agent_version(
        None, "t1", decide_publish_version(agent(), PublishAgentVersion("t1", "agt_1", "u1", FLOW)), meta(2)
    )
    cmd = UpdateAgentVersion("t1", "agt_1", 1, "u2", {"status": "deprecated"}, Precondition(frozenset({2})))
    event = decide_update_version(a, v, cmd)
    assert event is not None and event.status == "deprecated"
    v2 = evolve_agent_version(v, "t1", event, meta(3))
    assert v2 is not None and (v2.status, v2.version, v2.updated_by) == ("deprecated", 3, "u2")
    a2 = evolve_agent(a, "t1", event, meta(3))
    assert a2 is not None and a2.version == 3 and a2.latest_version == 1
    assert (
        decide_update_version(a, v2, UpdateAgentVersion("t1", "agt_1", 1, "u2", {"status": "deprecated"}))
        is None
    )
    with pytest.raises(NotFound):
        decide_update_version(a, None, UpdateAgentVersion("t1", "agt_1", 9, "u2", {"status": "active"}))


def test_events_of_other_versions_or_aggregates_leave_state_alone() -> None:
    v = evolve_agent_version(
        None, "t1", decide_publish_version(agent(), PublishAgentVersion("t1", "agt_1", "u1", FLOW)), meta(2)
    )
    other = AgentVersionUpdated(agent_id="agt_1", version=2, status="deprecated", updated_by="u")
    assert evolve_agent_version(v, "t1", other, meta(3)) is None
    assert evolve_project(None, "t1", other, meta(1)) is None
    assert evolve_agent(None, "t1", other, meta(1)) is None
