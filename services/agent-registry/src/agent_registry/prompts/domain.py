"""Prompts and their versions as aggregates: state folded from events, commands, rules deciding
new events, and the errors a caller sees (pure, no I/O).

A prompt and everything under it (versions, labels) is one event stream,
`prompt:{tenant}:{prompt_id}`; a prompt's `version` is that stream's version (its ETag), so a label
move or a new version also moves it, and two concurrent writers to one prompt conflict (409).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ailab_contracts.events.prompts import (
    PromptCreated,
    PromptDeleted,
    PromptLabelMoved,
    PromptLabelRemoved,
    PromptMessage,
    PromptUpdated,
    PromptVariable,
    PromptVersionCreated,
)

from ..domain import lifecycle
from ..domain.commands import Precondition
from ..domain.errors import InvalidReference, NotFound, RegistryError
from ..domain.lifecycle import DELETED, DeletedByStatus, EventMeta, normalize_tags
from ..domain.values import storage_problems
from .template import check_version

PROMPT_FIELDS = ("name", "description", "tags", "metadata", "status")
LABEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
LATEST = "latest"  # implicit label: always the newest version, never stored
MAX_LABELS = 50
MAX_VERSION_BYTES = 1_000_000  # text, messages, variables and model_params together


def prompt_stream(tenant_id: str, prompt_id: str) -> str:
    return f"prompt:{tenant_id}:{prompt_id}"


def version_doc_id(prompt_id: str, number: int) -> str:
    return f"{prompt_id}:v{number}"


def artifact_prefix(tenant_id: str, prompt_id: str, number: int) -> str:
    """Where the specification's artifact layout puts a version (`tenants/{t}/prompts/{id}/versions/{n}/`)."""
    return f"tenants/{tenant_id}/prompts/{prompt_id}/versions/{number}/"


# --- errors ---------------------------------------------------------------------------------------


class PromptError(RegistryError):
    """A rule of prompts; `status` is the HTTP status it answers with."""

    status = 400


class InvalidPrompt(PromptError):
    code = "invalid_prompt"
    status = 422

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"prompt version is invalid ({len(problems)} problem(s))", problems)


class InvalidVariables(PromptError):
    code = "invalid_variables"
    status = 422

    def __init__(self, details: dict[str, Any]) -> None:
        parts = [f"{k.replace('_', ' ')}: {', '.join(_names(v))}" for k, v in details.items() if v]
        super().__init__(
            "variables do not match the version's declarations (" + "; ".join(parts) + ")", details
        )


def _names(items: Sequence[Any]) -> list[str]:
    return [str(i["name"]) if isinstance(i, dict) else str(i) for i in items]


class InvalidLabel(PromptError):
    code = "invalid_label"
    status = 422

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"label {label!r}: {reason}", {"label": label, "pattern": LABEL_NAME.pattern})


class PromptArchived(PromptError):
    code = "prompt_archived"
    status = 409

    def __init__(self, prompt_id: str) -> None:
        super().__init__(
            f"prompt {prompt_id} is archived; set its status to active or inactive to add versions",
            {"prompt_id": prompt_id},
        )


# --- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatePrompt:
    tenant_id: str
    actor: str
    name: str
    description: str | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdatePrompt:
    """`changes` holds the fields to set (name, description, tags, metadata, status)."""

    tenant_id: str
    prompt_id: str
    actor: str
    changes: Mapping[str, Any]
    precondition: Precondition | None = None


@dataclass(frozen=True)
class DeletePrompt:
    tenant_id: str
    prompt_id: str
    actor: str
    precondition: Precondition | None = None


@dataclass(frozen=True)
class CreatePromptVersion:
    """`variables` are dicts with name, type, required, default, description; `labels` are moved
    to the new version in the same commit."""

    tenant_id: str
    prompt_id: str
    actor: str
    template: str | None = None
    messages: Sequence[Mapping[str, Any]] | None = None
    variables: Sequence[Mapping[str, Any]] = ()
    model_params: Mapping[str, Any] = field(default_factory=dict)
    tags: Sequence[str] = ()
    changelog: str | None = None
    labels: Sequence[str] = ()


@dataclass(frozen=True)
class MoveLabel:
    tenant_id: str
    prompt_id: str
    label: str
    version: int
    actor: str
    precondition: Precondition | None = None


@dataclass(frozen=True)
class RemoveLabel:
    tenant_id: str
    prompt_id: str
    label: str
    actor: str
    precondition: Precondition | None = None


# --- state ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt(DeletedByStatus):
    id: str
    tenant_id: str
    name: str
    description: str | None
    status: str
    tags: list[str]
    metadata: dict[str, Any]
    labels: dict[str, int]
    latest_version: int | None
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int  # stream version this state reflects (the ETag)

    def labels_of(self, number: int) -> list[str]:
        """Labels pointing at version `number`, `latest` included when it is the newest."""
        names = sorted(label for label, n in self.labels.items() if n == number)
        return [*names, LATEST] if number == self.latest_version else names


@dataclass(frozen=True)
class PromptVersion:
    tenant_id: str
    prompt_id: str
    number: int
    status: str  # active | deprecated (all versions of a deleted prompt are deprecated)
    template: str | None
    messages: list[dict[str, Any]] | None
    variables: list[dict[str, Any]]
    model_params: dict[str, Any]
    tags: list[str]
    changelog: str | None
    prompt_deleted: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    version: int  # stream version of the last event that changed this version

    @property
    def id(self) -> str:
        return version_doc_id(self.prompt_id, self.number)


def evolve_prompt(state: Prompt | None, tenant_id: str, event: BaseModel, meta: EventMeta) -> Prompt | None:
    """The prompt after `event`; every event of its stream moves `version`."""
    if isinstance(event, PromptCreated):
        if state is not None:
            return state
        return Prompt(
            id=event.prompt_id,
            labels={},
            latest_version=None,
            **lifecycle.new_entity_fields(event, tenant_id, meta),
        )
    if state is None:
        return None
    if isinstance(event, PromptUpdated):
        return lifecycle.touched(state, meta, event.updated_by, **lifecycle.set_fields(event, PROMPT_FIELDS))
    if isinstance(event, PromptDeleted):
        return lifecycle.touched(state, meta, event.deleted_by, status=DELETED)
    if isinstance(event, PromptVersionCreated):
        latest = max(state.latest_version or 0, event.version)
        return lifecycle.touched(state, meta, event.created_by, latest_version=latest)
    if isinstance(event, PromptLabelMoved):
        return lifecycle.touched(
            state, meta, event.moved_by, labels={**state.labels, event.label: event.version}
        )
    if isinstance(event, PromptLabelRemoved):
        labels = {k: v for k, v in state.labels.items() if k != event.label}
        return lifecycle.touched(state, meta, event.removed_by, labels=labels)
    return None


def evolve_prompt_version(
    state: PromptVersion | None, tenant_id: str, event: BaseModel, meta: EventMeta
) -> PromptVersion | None:
    at, position = meta.occurred_at, meta.stream_version
    if isinstance(event, PromptVersionCreated):
        if state is not None:
            return state
        return PromptVersion(
            tenant_id=tenant_id,
            prompt_id=event.prompt_id,
            number=event.version,
            status="active",
            template=event.template,
            messages=[m.model_dump(mode="json") for m in event.messages]
            if event.messages is not None
            else None,
            variables=[v.model_dump(mode="json") for v in event.variables],
            model_params=dict(event.model_params),
            tags=list(event.tags),
            changelog=event.changelog,
            prompt_deleted=False,
            created_at=at,
            created_by=event.created_by,
            updated_at=at,
            version=position,
        )
    if state is None:
        return None
    if isinstance(event, PromptDeleted) and event.prompt_id == state.prompt_id:
        return replace(state, status="deprecated", prompt_deleted=True, updated_at=at, version=position)
    return None


# --- rules ----------------------------------------------------------------------------------------


def require_live(prompt: Prompt | None, prompt_id: str, precondition: Precondition | None = None) -> Prompt:
    return lifecycle.require_live(prompt, "prompt", prompt_id, precondition)


def check_label_name(label: str) -> None:
    if label == LATEST:
        raise InvalidLabel(label, "`latest` always means the newest version and cannot be set or removed")
    if not LABEL_NAME.match(label):
        raise InvalidLabel(label, f"label names match {LABEL_NAME.pattern}")


def resolve_version(prompt: Prompt, ref: str | int) -> int:
    """The version number `ref` names: a number, a label, or `latest`; NotFound otherwise."""
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        return int(ref)
    if ref == LATEST:
        if prompt.latest_version is None:
            raise NotFound("prompt version", f"{prompt.id}:{LATEST}")
        return prompt.latest_version
    if ref not in prompt.labels:
        raise NotFound("prompt label", f"{prompt.id}:{ref}")
    return prompt.labels[ref]


def decide_create_prompt(prompt_id: str, cmd: CreatePrompt) -> PromptCreated:
    return PromptCreated(prompt_id=prompt_id, **lifecycle.created_fields(cmd))


def decide_update_prompt(prompt: Prompt | None, cmd: UpdatePrompt) -> PromptUpdated | None:
    """None when nothing would change."""
    live = require_live(prompt, cmd.prompt_id, cmd.precondition)
    changes = lifecycle.changed_fields(live, cmd.changes, PROMPT_FIELDS)
    lifecycle.check_changes(changes, delete_refusal="use DeletePrompt to delete a prompt")
    return PromptUpdated(prompt_id=live.id, updated_by=cmd.actor, **changes) if changes else None


def decide_delete_prompt(prompt: Prompt | None, cmd: DeletePrompt) -> PromptDeleted:
    live = require_live(prompt, cmd.prompt_id, cmd.precondition)
    return PromptDeleted(prompt_id=live.id, deleted_by=cmd.actor)


@dataclass(frozen=True)
class VersionDecision:
    created: PromptVersionCreated
    labels: list[PromptLabelMoved]
    warnings: list[dict[str, Any]]

    @property
    def events(self) -> list[BaseModel]:
        return [self.created, *self.labels]


def decide_create_version(prompt: Prompt | None, cmd: CreatePromptVersion) -> VersionDecision:
    """A version numbered after the latest; its text and variables must pass `check_version`
    (every problem is listed at once), and the requested labels move to it."""
    live = require_live(prompt, cmd.prompt_id)
    if live.status == "archived":
        raise PromptArchived(live.id)
    variables = [dict(v) for v in cmd.variables]
    messages = [dict(m) for m in cmd.messages] if cmd.messages is not None else None
    check = check_version(cmd.template, messages, variables)
    problems = list(check.problems)
    problems.extend(storage_problems(dict(cmd.model_params), ["body", "model_params"]))
    if not problems:
        size = len(json.dumps([cmd.template, messages, variables, dict(cmd.model_params)]).encode())
        if size > MAX_VERSION_BYTES:
            problems.append(
                {
                    "code": "value_too_large",
                    "message": f"the version is {size} bytes; the limit is {MAX_VERSION_BYTES}",
                    "loc": ["body"],
                }
            )
    if problems:
        raise InvalidPrompt(problems)
    labels = list(dict.fromkeys(cmd.labels))
    for label in labels:
        check_label_name(label)
    if len(set(live.labels) | set(labels)) > MAX_LABELS:
        raise InvalidLabel(labels[-1], f"a prompt has at most {MAX_LABELS} labels")
    number = (live.latest_version or 0) + 1
    created = PromptVersionCreated(
        prompt_id=live.id,
        version=number,
        template=cmd.template,
        messages=[PromptMessage.model_validate(m) for m in messages] if messages is not None else None,
        variables=[PromptVariable.model_validate(v) for v in variables],
        model_params=dict(cmd.model_params),
        tags=normalize_tags(cmd.tags),
        changelog=cmd.changelog,
        created_by=cmd.actor,
    )
    moved = [
        PromptLabelMoved(
            prompt_id=live.id,
            label=label,
            version=number,
            previous_version=live.labels.get(label),
            moved_by=cmd.actor,
        )
        for label in labels
    ]
    return VersionDecision(created, moved, check.warnings)


def decide_move_label(prompt: Prompt | None, cmd: MoveLabel) -> PromptLabelMoved | None:
    """None when the label already points at that version."""
    live = require_live(prompt, cmd.prompt_id)
    check_label_name(cmd.label)
    if cmd.precondition:
        cmd.precondition.check(live.version)
    if not 1 <= cmd.version <= (live.latest_version or 0):
        raise InvalidReference("version", "prompt version", version_doc_id(live.id, cmd.version))
    current = live.labels.get(cmd.label)
    if current == cmd.version:
        return None
    if current is None and len(live.labels) >= MAX_LABELS:
        raise InvalidLabel(cmd.label, f"a prompt has at most {MAX_LABELS} labels")
    return PromptLabelMoved(
        prompt_id=live.id, label=cmd.label, version=cmd.version, previous_version=current, moved_by=cmd.actor
    )


def decide_remove_label(prompt: Prompt | None, cmd: RemoveLabel) -> PromptLabelRemoved:
    live = require_live(prompt, cmd.prompt_id)
    check_label_name(cmd.label)
    if cmd.precondition:
        cmd.precondition.check(live.version)
    if cmd.label not in live.labels:
        raise NotFound("prompt label", f"{live.id}:{cmd.label}")
    return PromptLabelRemoved(
        prompt_id=live.id, label=cmd.label, previous_version=live.labels[cmd.label], removed_by=cmd.actor
    )
