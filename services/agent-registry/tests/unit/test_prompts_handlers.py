"""Prompt use cases over the in-memory fakes: versions, labels, rendering, diffs and their rules."""

from __future__ import annotations

import pytest

from agent_registry.adapters.memory import sequential_ids
from agent_registry.application.ports import ListFilter
from agent_registry.domain.commands import Precondition
from agent_registry.domain.errors import InvalidReference, NotFound, PreconditionFailed
from agent_registry.prompts import handlers
from agent_registry.prompts.domain import (
    CreatePrompt,
    CreatePromptVersion,
    DeletePrompt,
    InvalidLabel,
    InvalidPrompt,
    InvalidVariables,
    MoveLabel,
    PromptArchived,
    RemoveLabel,
    UpdatePrompt,
    resolve_version,
)
from agent_registry.prompts.memory import InMemoryPrompts
from agent_registry.prompts.ports import PromptPorts
from ailab_runtime.errors import ApiError

pytestmark = pytest.mark.unit

T = "t1"


@pytest.fixture
def fake() -> InMemoryPrompts:
    return InMemoryPrompts()


@pytest.fixture
def ports(fake: InMemoryPrompts) -> PromptPorts:
    return PromptPorts(views=fake, recorder=fake, new_id=sequential_ids())


def text_version(prompt_id: str, template: str = "Hello {{ name }}", **kw: object) -> CreatePromptVersion:
    return CreatePromptVersion(
        tenant_id=T,
        prompt_id=prompt_id,
        actor="u1",
        template=template,
        variables=kw.pop("variables", [{"name": "name", "type": "string"}]),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def event_types(fake: InMemoryPrompts, prompt_id: str) -> list[str]:
    return [e.event_type for e in fake.streams[f"prompt:{T}:{prompt_id}"]]


async def test_versions_are_numbered_and_labels_move_with_events(
    ports: PromptPorts, fake: InMemoryPrompts
) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "Greeting", tags=["a", "a", " b "]), ports)
    assert (prompt.id, prompt.tags, prompt.labels, prompt.latest_version) == (
        "pmt_0001",
        ["a", "b"],
        {},
        None,
    )

    v1 = await handlers.create_prompt_version(text_version(prompt.id, labels=["production"]), ports)
    assert (v1.version.number, v1.prompt.labels, v1.prompt.latest_version, v1.prompt.version) == (
        1,
        {"production": 1},
        1,
        3,
    )
    v2 = await handlers.create_prompt_version(text_version(prompt.id, "Hi {{ name }}"), ports)
    assert v2.version.number == 2 and v2.prompt.labels_of(2) == ["latest"]
    assert v2.prompt.labels_of(1) == ["production"]

    moved = await handlers.move_label(MoveLabel(T, prompt.id, "production", 2, "u2"), ports)
    assert moved.labels == {"production": 2} and moved.updated_by == "u2"
    same = await handlers.move_label(MoveLabel(T, prompt.id, "production", 2, "u2"), ports)
    assert same.version == moved.version, "moving a label where it already is records nothing"
    removed = await handlers.remove_label(RemoveLabel(T, prompt.id, "production", "u3"), ports)
    assert removed.labels == {}
    assert event_types(fake, prompt.id) == [
        "registry.PromptCreated",
        "registry.PromptVersionCreated",
        "registry.PromptLabelMoved",
        "registry.PromptVersionCreated",
        "registry.PromptLabelMoved",
        "registry.PromptLabelRemoved",
    ]
    moved_event = fake.streams[f"prompt:{T}:{prompt.id}"][4].payload
    assert (moved_event["version"], moved_event["previous_version"]) == (2, 1)

    with pytest.raises(NotFound):
        await handlers.remove_label(RemoveLabel(T, prompt.id, "production", "u3"), ports)


async def test_label_rules(ports: PromptPorts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    await handlers.create_prompt_version(text_version(prompt.id), ports)
    for bad in ("latest", "Prod", "1st", "a" * 41, "with space"):
        with pytest.raises(InvalidLabel):
            await handlers.move_label(MoveLabel(T, prompt.id, bad, 1, "u"), ports)
    with pytest.raises(InvalidReference):
        await handlers.move_label(MoveLabel(T, prompt.id, "prod", 2, "u"), ports)
    with pytest.raises(InvalidLabel):
        await handlers.create_prompt_version(text_version(prompt.id, labels=["latest"]), ports)
    with pytest.raises(PreconditionFailed):
        await handlers.move_label(
            MoveLabel(T, prompt.id, "prod", 1, "u", Precondition(frozenset({1}))), ports
        )


async def test_resolving_numbers_labels_and_latest(ports: PromptPorts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    with pytest.raises(NotFound):
        resolve_version(prompt, "latest")
    await handlers.create_prompt_version(text_version(prompt.id, labels=["prod"]), ports)
    await handlers.create_prompt_version(text_version(prompt.id), ports)
    current = await handlers.get_prompt(ports, T, prompt.id)
    assert [resolve_version(current, r) for r in ("1", "2", "latest", "prod", 7)] == [1, 2, 2, 1, 7]
    with pytest.raises(NotFound):
        resolve_version(current, "staging")
    with pytest.raises(NotFound):
        await handlers.get_prompt_version(ports, T, prompt.id, "3")


async def test_invalid_versions_are_refused_with_every_problem(
    ports: PromptPorts, fake: InMemoryPrompts
) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    with pytest.raises(InvalidPrompt) as caught:
        await handlers.create_prompt_version(
            text_version(
                prompt.id,
                "{{ name }} {{ other }} {{ a.b }}",
                variables=[{"name": "name", "type": "number", "default": "x"}],
            ),
            ports,
        )
    assert [p["code"] for p in caught.value.details] == [
        "invalid_default",
        "invalid_placeholder",
        "undeclared_placeholder",
    ]
    with pytest.raises(InvalidPrompt) as caught:
        await handlers.create_prompt_version(text_version(prompt.id, model_params={"$bad": 1}), ports)
    assert [(p["code"], p["loc"]) for p in caught.value.details] == [
        ("invalid_key", ["body", "model_params", "$bad"])
    ]
    assert event_types(fake, prompt.id) == ["registry.PromptCreated"], "nothing recorded on refusal"


async def test_unused_variables_are_warnings(ports: PromptPorts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    created = await handlers.create_prompt_version(
        text_version(prompt.id, variables=[{"name": "name"}, {"name": "spare", "required": False}]), ports
    )
    assert [w["name"] for w in created.warnings] == ["spare"]
    assert handlers.warnings_of(created.version) == created.warnings


async def test_render_and_its_errors(ports: PromptPorts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    await handlers.create_prompt_version(
        CreatePromptVersion(
            T,
            prompt.id,
            "u1",
            messages=[
                {"role": "system", "content": "Tone {{ tone }}"},
                {"role": "user", "content": "{{ n }}"},
            ],
            variables=[
                {"name": "tone", "type": "string", "required": False, "default": "calm"},
                {"name": "n", "type": "integer"},
            ],
            labels=["prod"],
        ),
        ports,
    )
    rendered = await handlers.render_prompt_version(ports, T, prompt.id, "prod", {"n": 3})
    assert rendered.rendered == [{"role": "system", "content": "Tone calm"}, {"role": "user", "content": "3"}]
    assert rendered.variables_used == {"tone": "calm", "n": 3}
    with pytest.raises(InvalidVariables) as caught:
        await handlers.render_prompt_version(ports, T, prompt.id, "1", {"tone": 5, "zzz": 1})
    assert caught.value.details["missing"] == ["n"] and caught.value.details["undeclared"] == ["zzz"]
    assert [e["name"] for e in caught.value.details["type_errors"]] == ["tone"]
    assert "missing: n" in caught.value.message


async def test_diff_between_label_and_number(ports: PromptPorts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    await handlers.create_prompt_version(
        text_version(prompt.id, model_params={"temperature": 1}, labels=["a"]), ports
    )
    await handlers.create_prompt_version(text_version(prompt.id, "Hi {{ name }}"), ports)
    result = await handlers.diff_prompt_versions(ports, T, prompt.id, "a", "2")
    assert (result.before.number, result.after.number) == (1, 2)
    assert "-Hello {{ name }}" in result.changes["text_diff"]
    assert result.changes["model_params"]["removed"] == {"temperature": 1}
    with pytest.raises(NotFound):
        await handlers.diff_prompt_versions(ports, T, prompt.id, "1", "9")


async def test_update_archive_delete_and_tenancy(ports: PromptPorts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    await handlers.create_prompt_version(text_version(prompt.id), ports)
    archived = await handlers.update_prompt(UpdatePrompt(T, prompt.id, "u2", {"status": "archived"}), ports)
    assert archived.status == "archived"
    with pytest.raises(PromptArchived):
        await handlers.create_prompt_version(text_version(prompt.id), ports)
    unchanged = await handlers.update_prompt(UpdatePrompt(T, prompt.id, "u2", {"status": "archived"}), ports)
    assert unchanged.version == archived.version
    with pytest.raises(NotFound):
        await handlers.get_prompt(ports, "t2", prompt.id)
    assert (await handlers.list_prompts(ports, "t2", ListFilter()))[0] == []

    await handlers.delete_prompt(DeletePrompt(T, prompt.id, "u3"), ports)
    with pytest.raises(NotFound):
        await handlers.get_prompt(ports, T, prompt.id)
    stored = await ports.views.prompt_version(T, prompt.id, 1)
    assert stored is not None and (stored.status, stored.prompt_deleted) == ("deprecated", True)


async def test_concurrent_writers_conflict_on_the_stream(ports: PromptPorts, fake: InMemoryPrompts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    stale = await ports.views.prompt(T, prompt.id)
    await handlers.create_prompt_version(text_version(prompt.id), ports)
    assert stale is not None
    with pytest.raises(ApiError) as caught:
        await fake.record(
            stream_id=f"prompt:{T}:{prompt.id}", expected_version=stale.version, tenant_id=T, events=[]
        )
    assert caught.value.status == 409


async def test_versions_too_large_to_store_are_refused(ports: PromptPorts) -> None:
    prompt = await handlers.create_prompt(CreatePrompt(T, "u1", "P"), ports)
    with pytest.raises(InvalidPrompt) as caught:
        await handlers.create_prompt_version(
            text_version(prompt.id, "x" * 600_000, variables=[], model_params={"notes": "y" * 500_000}), ports
        )
    assert [(p["code"], p["loc"]) for p in caught.value.details] == [("value_too_large", ["body"])]
