"""Experiment use cases over the in-memory fakes: references are checked, starts freeze the definition,
pin the dataset file and are numbered per experiment; a running run blocks a new start unless forced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent_registry.adapters.memory import sequential_ids
from agent_registry.domain.commands import Precondition
from agent_registry.domain.errors import InvalidReference, NotFound, PreconditionFailed
from agent_registry.experiments import handlers
from agent_registry.experiments.commands import CreateExperiment, StartExperiment, UpdateExperiment
from agent_registry.experiments.errors import DatasetEmpty, ExperimentArchived, ExperimentRunning
from agent_registry.experiments.memory import FakeReferences, InMemoryExperiments
from agent_registry.experiments.ports import ExperimentFilter, ExperimentPorts
from ailab_contracts.events.experiments import ExperimentStarted
from ailab_contracts.events.runs import ExperimentRunCompleted, ExperimentRunStarted

pytestmark = pytest.mark.unit

TARGET = {"type": "agent_version", "agent_id": "agt_1", "version": 1}
EVALUATORS = [{"name": "exact", "type": "exact_match", "config": {"case_sensitive": False}}]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> InMemoryExperiments:
    return InMemoryExperiments()


@pytest.fixture
def refs() -> FakeReferences:
    refs = FakeReferences(agent_versions={("t1", "agt_1", 1)}, prompt_versions={("t1", "pmt_1", 2)})
    refs.add_dataset("t1", "dst_1", rows=3, upload_id="upl_1")
    return refs


@pytest.fixture
def ports(store: InMemoryExperiments, refs: FakeReferences) -> ExperimentPorts:
    return ExperimentPorts(views=store, references=refs, recorder=store, new_id=sequential_ids())


def create(**overrides: Any) -> CreateExperiment:
    fields: dict[str, Any] = {
        "tenant_id": "t1",
        "actor": "u1",
        "name": "E",
        "target": TARGET,
        "dataset_id": "dst_1",
        "evaluators": EVALUATORS,
        **overrides,
    }
    return CreateExperiment(**fields)


async def test_create_checks_each_reference_and_names_its_field(ports: ExperimentPorts) -> None:
    created = await handlers.create_experiment(create(), ports)
    assert (created.id, created.version, created.last_run_number) == ("exp_0001", 1, None)
    cases = [
        ({"target": {**TARGET, "version": 2}}, "target", "agt_1:v2"),
        ({"target": {"type": "agent_version", "agent_id": "agt_x", "version": 1}}, "target", "agt_x:v1"),
        ({"target": {"type": "prompt_version", "prompt_id": "pmt_1", "version": 9}}, "target", "pmt_1:v9"),
        ({"dataset_id": "dst_nope"}, "dataset_id", "dst_nope"),
        (
            {
                "evaluators": [
                    *EVALUATORS,
                    {
                        "name": "judge",
                        "type": "llm_judge",
                        "config": {"prompt_id": "pmt_2", "prompt_version": 1, "model": "m"},
                    },
                ]
            },
            "evaluators[1].config.prompt_id",
            "pmt_2:v1",
        ),
    ]
    for overrides, field, ident in cases:
        with pytest.raises(InvalidReference) as caught:
            await handlers.create_experiment(create(**overrides), ports)
        assert caught.value.details == {"field": field, "id": ident}
        assert caught.value.code == "invalid_reference"
    prompt = await handlers.create_experiment(
        create(target={"type": "prompt_version", "prompt_id": "pmt_1", "version": 2}), ports
    )
    assert prompt.target == {"type": "prompt_version", "prompt_id": "pmt_1", "version": 2}


async def test_references_are_tenant_scoped(ports: ExperimentPorts) -> None:
    with pytest.raises(InvalidReference):
        await handlers.create_experiment(create(tenant_id="t2"), ports)
    created = await handlers.create_experiment(create(), ports)
    with pytest.raises(NotFound):
        await handlers.get_experiment(ports.views, "t2", created.id)


async def test_a_deleted_dataset_is_not_a_reference(ports: ExperimentPorts, refs: FakeReferences) -> None:
    refs.add_dataset("t1", "dst_gone", status="deleted")
    with pytest.raises(InvalidReference):
        await handlers.create_experiment(create(dataset_id="dst_gone"), ports)


async def test_update_changes_only_what_differs(ports: ExperimentPorts, store: InMemoryExperiments) -> None:
    created = await handlers.create_experiment(create(), ports)
    same = await handlers.update_experiment(
        UpdateExperiment("t1", created.id, "u2", {"name": "E", "evaluators": EVALUATORS}), ports
    )
    assert same.version == 1 and len(store.streams[f"experiment:t1:{created.id}"]) == 1
    updated = await handlers.update_experiment(
        UpdateExperiment(
            "t1", created.id, "u2", {"concurrency": 16, "tags": ["x", "x"]}, Precondition(frozenset({1}))
        ),
        ports,
    )
    assert (updated.concurrency, updated.tags, updated.version, updated.updated_by) == (16, ["x"], 2, "u2")
    with pytest.raises(PreconditionFailed):
        await handlers.update_experiment(
            UpdateExperiment("t1", created.id, "u2", {"name": "F"}, Precondition(frozenset({1}))), ports
        )
    with pytest.raises(InvalidReference) as caught:
        await handlers.update_experiment(
            UpdateExperiment("t1", created.id, "u2", {"dataset_id": "dst_2"}), ports
        )
    assert caught.value.details["field"] == "dataset_id"
    with pytest.raises(NotFound):
        await handlers.update_experiment(UpdateExperiment("t1", "exp_nope", "u2", {"name": "F"}), ports)


async def test_start_freezes_the_definition_and_pins_the_dataset(
    ports: ExperimentPorts, store: InMemoryExperiments
) -> None:
    created = await handlers.create_experiment(create(parameters={"model": "gpt-4o"}, concurrency=2), ports)
    status = await handlers.start_experiment(StartExperiment("t1", created.id, "u9"), ports)
    assert (status.run_number, status.status, status.examples_total, status.examples_scored) == (
        1,
        "pending",
        3,
        0,
    )
    assert status.requested_by == "u9"
    started = store.streams[f"experiment:t1:{created.id}"][-1]
    assert started.event_type == "registry.ExperimentStarted"
    payload = ExperimentStarted.model_validate(started.payload)
    assert payload.run_number == 1 and payload.requested_by == "u9"
    assert (payload.dataset_id, payload.upload_id, payload.example_count) == ("dst_1", "upl_1", 3)
    assert payload.content_sha256 == "ab" * 32
    assert payload.target.model_dump() == TARGET
    assert (payload.parameters, payload.concurrency, payload.expected_output_field) == (
        {"model": "gpt-4o"},
        2,
        "expected",
    )
    assert payload.supersedes_run_number is None
    after = await handlers.get_experiment(ports.views, "t1", created.id)
    assert (after.last_run_number, after.version) == (1, 2)


async def test_start_refuses_an_empty_or_missing_dataset(
    ports: ExperimentPorts, refs: FakeReferences
) -> None:
    created = await handlers.create_experiment(create(), ports)
    refs.add_dataset("t1", "dst_1", rows=0, upload_id="upl_1")
    with pytest.raises(DatasetEmpty):
        await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    refs.add_dataset("t1", "dst_1", rows=None, upload_id=None)
    with pytest.raises(DatasetEmpty):
        await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    refs.add_dataset("t1", "dst_1", status="deleted")
    with pytest.raises(InvalidReference) as caught:
        await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    assert caught.value.details["field"] == "dataset_id"
    refs.agent_versions.clear()
    refs.add_dataset("t1", "dst_1")
    with pytest.raises(InvalidReference) as caught:
        await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    assert caught.value.details["field"] == "target"


async def test_a_pending_or_running_run_blocks_a_start_unless_forced(
    ports: ExperimentPorts, store: InMemoryExperiments
) -> None:
    created = await handlers.create_experiment(create(), ports)
    await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    with pytest.raises(ExperimentRunning) as caught:
        await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    assert caught.value.details == {"experiment_id": created.id, "run_number": 1, "status": "pending"}
    store.report(
        "t1", ExperimentRunStarted(experiment_id=created.id, run_number=1, started_at=NOW, example_count=3), 1
    )
    with pytest.raises(ExperimentRunning) as caught:
        await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    assert caught.value.details["status"] == "running"
    forced = await handlers.start_experiment(StartExperiment("t1", created.id, "u1", force=True), ports)
    assert (forced.run_number, forced.status) == (2, "pending")
    payload = store.streams[f"experiment:t1:{created.id}"][-1].payload
    assert payload["supersedes_run_number"] == 1
    store.report(
        "t1",
        ExperimentRunCompleted.model_validate(
            {
                "experiment_id": created.id,
                "run_number": 2,
                "status": "cancelled",
                "summary": {"examples_total": 3, "examples_scored": 0, "examples_failed": 0},
                "completed_at": NOW,
            }
        ),
        2,
    )
    third = await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    assert third.run_number == 3
    first = await handlers.experiment_status(ports.views, "t1", created.id, 1)
    assert first.status == "running"
    with pytest.raises(NotFound):
        await handlers.experiment_status(ports.views, "t1", created.id, 4)


async def test_an_archived_experiment_does_not_start(ports: ExperimentPorts) -> None:
    created = await handlers.create_experiment(create(), ports)
    await handlers.update_experiment(UpdateExperiment("t1", created.id, "u1", {"status": "archived"}), ports)
    with pytest.raises(ExperimentArchived):
        await handlers.start_experiment(StartExperiment("t1", created.id, "u1"), ports)
    with pytest.raises(NotFound):
        await handlers.start_experiment(StartExperiment("t1", "exp_nope", "u1"), ports)


async def test_status_before_any_start_is_not_started(ports: ExperimentPorts) -> None:
    created = await handlers.create_experiment(create(), ports)
    status = await handlers.experiment_status(ports.views, "t1", created.id)
    assert (status.status, status.run_number, status.examples_total) == ("not_started", None, None)
    status, items, cursor = await handlers.experiment_results(ports.views, "t1", created.id, None, 10, None)
    assert (status.status, items, cursor) == ("not_started", [], None)


async def test_list_filters(ports: ExperimentPorts, refs: FakeReferences) -> None:
    refs.add_dataset("t1", "dst_2")
    a = await handlers.create_experiment(create(tags=["nightly"]), ports)
    b = await handlers.create_experiment(
        create(dataset_id="dst_2", target={"type": "prompt_version", "prompt_id": "pmt_1", "version": 2}),
        ports,
    )

    async def ids(**flt: Any) -> list[str]:
        items, _ = await handlers.list_experiments(ports.views, "t1", ExperimentFilter(**flt))
        return [e.id for e in items]

    assert await ids() == [a.id, b.id]
    assert await ids(tag="nightly") == [a.id]
    assert await ids(dataset_id="dst_2") == [b.id]
    assert await ids(agent_id="agt_1") == [a.id]
    assert await ids(prompt_id="pmt_1") == [b.id]
    first, cursor = await handlers.list_experiments(ports.views, "t1", ExperimentFilter(limit=1))
    rest, end = await handlers.list_experiments(ports.views, "t1", ExperimentFilter(limit=1, cursor=cursor))
    assert ([e.id for e in first], [e.id for e in rest], end) == ([a.id], [b.id], None)
