"""Use cases of prompts: command handlers (load state from the read model, let the domain decide,
record the events) and queries (what a caller may read; a deleted prompt and everything under it
is not found).

Every write goes to the prompt's stream with the expected version read from the view, so a write
based on a stale view fails with 409 instead of losing an update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..application.ports import ListFilter
from ..application.recording import Recorded, record
from ..domain.errors import NotFound
from ..domain.lifecycle import fold
from . import diff as prompt_diff
from . import domain, template
from .domain import (
    CreatePrompt,
    CreatePromptVersion,
    DeletePrompt,
    MoveLabel,
    Prompt,
    PromptVersion,
    RemoveLabel,
    UpdatePrompt,
)
from .ports import PromptPorts


async def _record(
    ports: PromptPorts, prompt: Prompt | None, tenant_id: str, prompt_id: str, events: Sequence[BaseModel]
) -> tuple[Prompt, Recorded]:
    """On the prompt's stream at the version `prompt` was read at; the prompt after the events, and
    the events (a new version is folded from them too)."""
    recorded = await record(
        ports.recorder,
        tenant_id=tenant_id,
        stream_id=domain.prompt_stream(tenant_id, prompt_id),
        expected_version=prompt.version if prompt else 0,
        events=events,
    )
    return fold(domain.evolve_prompt, prompt, tenant_id, recorded), recorded


# --- commands -------------------------------------------------------------------------------------


async def create_prompt(cmd: CreatePrompt, ports: PromptPorts) -> Prompt:
    event = domain.decide_create_prompt(ports.new_id("pmt"), cmd)
    prompt, _ = await _record(ports, None, cmd.tenant_id, event.prompt_id, [event])
    return prompt


async def update_prompt(cmd: UpdatePrompt, ports: PromptPorts) -> Prompt:
    prompt = await ports.views.prompt(cmd.tenant_id, cmd.prompt_id)
    event = domain.decide_update_prompt(prompt, cmd)
    assert prompt is not None
    if event is None:
        return prompt
    updated, _ = await _record(ports, prompt, cmd.tenant_id, prompt.id, [event])
    return updated


async def delete_prompt(cmd: DeletePrompt, ports: PromptPorts) -> Prompt:
    prompt = await ports.views.prompt(cmd.tenant_id, cmd.prompt_id)
    event = domain.decide_delete_prompt(prompt, cmd)
    assert prompt is not None
    deleted, _ = await _record(ports, prompt, cmd.tenant_id, prompt.id, [event])
    return deleted


@dataclass(frozen=True)
class CreatedVersion:
    version: PromptVersion
    prompt: Prompt
    warnings: list[dict[str, Any]]


async def create_prompt_version(cmd: CreatePromptVersion, ports: PromptPorts) -> CreatedVersion:
    """Numbers follow the prompt's latest version; concurrent creates conflict on the stream."""
    prompt = await ports.views.prompt(cmd.tenant_id, cmd.prompt_id)
    decision = domain.decide_create_version(prompt, cmd)
    assert prompt is not None
    updated, recorded = await _record(ports, prompt, cmd.tenant_id, prompt.id, decision.events)
    version = fold(domain.evolve_prompt_version, None, cmd.tenant_id, recorded)
    return CreatedVersion(version, updated, decision.warnings)


async def move_label(cmd: MoveLabel, ports: PromptPorts) -> Prompt:
    prompt = await ports.views.prompt(cmd.tenant_id, cmd.prompt_id)
    event = domain.decide_move_label(prompt, cmd)
    assert prompt is not None
    if event is None:
        return prompt
    updated, _ = await _record(ports, prompt, cmd.tenant_id, prompt.id, [event])
    return updated


async def remove_label(cmd: RemoveLabel, ports: PromptPorts) -> Prompt:
    prompt = await ports.views.prompt(cmd.tenant_id, cmd.prompt_id)
    event = domain.decide_remove_label(prompt, cmd)
    assert prompt is not None
    updated, _ = await _record(ports, prompt, cmd.tenant_id, prompt.id, [event])
    return updated


# --- queries --------------------------------------------------------------------------------------


async def get_prompt(ports: PromptPorts, tenant_id: str, prompt_id: str) -> Prompt:
    return domain.require_live(await ports.views.prompt(tenant_id, prompt_id), prompt_id)


async def list_prompts(
    ports: PromptPorts, tenant_id: str, flt: ListFilter
) -> tuple[list[Prompt], str | None]:
    return await ports.views.prompts(tenant_id, flt)


async def list_prompt_versions(
    ports: PromptPorts, tenant_id: str, prompt_id: str, limit: int, cursor: str | None
) -> tuple[Prompt, list[PromptVersion], str | None]:
    prompt = await get_prompt(ports, tenant_id, prompt_id)
    versions, next_cursor = await ports.views.prompt_versions(tenant_id, prompt_id, limit, cursor)
    return prompt, versions, next_cursor


async def _version_of(ports: PromptPorts, prompt: Prompt, ref: str | int) -> PromptVersion:
    number = domain.resolve_version(prompt, ref)
    version = await ports.views.prompt_version(prompt.tenant_id, prompt.id, number)
    if version is None:
        raise NotFound("prompt version", domain.version_doc_id(prompt.id, number))
    return version


async def get_prompt_version(
    ports: PromptPorts, tenant_id: str, prompt_id: str, ref: str | int
) -> tuple[Prompt, PromptVersion]:
    """The version a number, a label or `latest` names."""
    prompt = await get_prompt(ports, tenant_id, prompt_id)
    return prompt, await _version_of(ports, prompt, ref)


@dataclass(frozen=True)
class Rendered:
    prompt: Prompt
    version: PromptVersion
    rendered: str | list[dict[str, Any]]
    variables_used: dict[str, Any]


async def render_prompt_version(
    ports: PromptPorts, tenant_id: str, prompt_id: str, ref: str | int, supplied: Mapping[str, Any]
) -> Rendered:
    """Checks `supplied` against the declarations (InvalidVariables lists every problem), applies
    defaults and substitutes the placeholders."""
    prompt, version = await get_prompt_version(ports, tenant_id, prompt_id, ref)
    values = template.check_values(version.variables, supplied)
    if not values.ok:
        raise domain.InvalidVariables(values.details())
    rendered = template.render(version.template, version.messages, version.variables, values.used)
    return Rendered(prompt, version, rendered, values.used)


@dataclass(frozen=True)
class VersionDiff:
    prompt: Prompt
    before: PromptVersion
    after: PromptVersion
    changes: dict[str, Any]


async def diff_prompt_versions(
    ports: PromptPorts, tenant_id: str, prompt_id: str, from_ref: str, to_ref: str
) -> VersionDiff:
    prompt = await get_prompt(ports, tenant_id, prompt_id)
    before = await _version_of(ports, prompt, from_ref)
    after = await _version_of(ports, prompt, to_ref)

    def shape(v: PromptVersion) -> dict[str, Any]:
        return {
            "template": v.template,
            "messages": v.messages,
            "variables": v.variables,
            "model_params": v.model_params,
        }

    changes = prompt_diff.diff_versions(
        shape(before), shape(after), f"{prompt_id}:v{before.number}", f"{prompt_id}:v{after.number}"
    )
    return VersionDiff(prompt, before, after, changes)


def warnings_of(version: PromptVersion) -> list[dict[str, Any]]:
    """Warnings of a stored version (declared variables no placeholder uses)."""
    return template.check_version(version.template, version.messages, version.variables).warnings
