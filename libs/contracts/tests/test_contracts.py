"""Every published event version still parses to the latest model; schemas export; upcasting works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ailab_contracts import REGISTRY, EventEnvelope, UnknownEventType, new_envelope
from ailab_contracts.events.registry import ProjectCreated
from ailab_contracts.schema import export, schemas

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent.parent / "fixtures"


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def test_every_registered_version_has_a_fixture() -> None:
    have = {p.name for p in fixture_files()}
    for event_type in REGISTRY.event_types():
        for version in REGISTRY.versions(event_type):
            assert f"{event_type}.v{version}.json" in have, f"missing fixture for {event_type} v{version}"


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.stem)
def test_fixture_parses_to_latest_model(path: Path) -> None:
    raw = json.loads(path.read_text())
    envelope, payload = REGISTRY.parse(raw)
    latest = REGISTRY.latest_version(raw["event_type"])
    assert envelope.schema_version == latest
    assert isinstance(payload, REGISTRY.model(raw["event_type"], latest))
    assert str(envelope.event_id) == raw["event_id"]


def test_project_created_v1_is_upcast_with_defaults() -> None:
    raw = json.loads((FIXTURES / "registry.ProjectCreated.v1.json").read_text())
    envelope, payload = REGISTRY.parse(raw)
    assert isinstance(payload, ProjectCreated)
    assert payload.tags == [] and payload.metadata == {}
    assert envelope.payload["name"] == raw["payload"]["name"]


def test_newer_version_than_known_is_refused() -> None:
    raw = json.loads((FIXTURES / "registry.ProjectCreated.v2.json").read_text())
    raw["schema_version"] = 99
    with pytest.raises(UnknownEventType):
        REGISTRY.parse(raw)


def test_unknown_type_and_bad_payload_are_refused() -> None:
    raw = json.loads((FIXTURES / "tenancy.UserJoined.v1.json").read_text())
    with pytest.raises(UnknownEventType):
        REGISTRY.parse({**raw, "event_type": "tenancy.Nope"})
    with pytest.raises(ValidationError):
        REGISTRY.parse({**raw, "payload": {"user_id": "u"}})


def test_envelope_is_frozen_and_round_trips() -> None:
    env = new_envelope(
        REGISTRY,
        ProjectCreated(project_id="p", name="n", created_by="u"),
        stream_id="project:t:p",
        stream_version=1,
        tenant_id="t",
        producer="test",
    )
    assert env.event_type == "registry.ProjectCreated" and env.schema_version == 2
    with pytest.raises(ValidationError):
        env.tenant_id = "other"  # type: ignore[misc]
    assert EventEnvelope.model_validate(env.to_wire()) == env


def test_schema_export_covers_every_version(tmp_path: Path) -> None:
    written = export(REGISTRY, tmp_path)
    expected = 1 + sum(len(REGISTRY.versions(t)) for t in REGISTRY.event_types())
    assert len(written) == expected
    doc = json.loads((tmp_path / "registry.ProjectCreated.v2.json").read_text())
    assert "tags" in doc["properties"] and doc["$id"].endswith(":v2")
    assert "payload" in schemas(REGISTRY)["envelope.json"]["properties"]


def test_committed_schemas_are_up_to_date() -> None:
    committed = Path(__file__).parent.parent / "schemas"
    for name, schema in schemas(REGISTRY).items():
        on_disk = json.loads((committed / name).read_text())
        assert on_disk == json.loads(json.dumps(schema)), f"{name} is stale: run `make contracts`"


def test_asyncapi_lists_every_event_version_on_its_topic() -> None:
    from ailab_contracts.asyncapi import asyncapi

    doc = asyncapi(REGISTRY)
    registry_channel = doc["channels"]["ailab_registry_events"]
    assert registry_channel["address"] == "ailab.registry.events"
    assert "registry_ProjectCreated_v1" in registry_channel["messages"]
    total = sum(len(c["messages"]) for c in doc["channels"].values())
    assert total == sum(len(REGISTRY.versions(t)) for t in REGISTRY.event_types())
    committed = json.loads((Path(__file__).parent.parent / "asyncapi.json").read_text())
    assert committed == json.loads(json.dumps(doc)), "asyncapi.json is stale: run `make contracts`"
