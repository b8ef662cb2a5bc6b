"""The life every registry entity shares (projects, agents, prompts, tools, datasets, experiments):
created from one event, changed field by field, deleted (kept for history, hidden from reads), its
state folded from its stream. Each feature keeps its own rules; these are the parts that are the
same everywhere, so that a fix to one serves all."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from ailab_contracts import EventEnvelope

from .commands import Precondition
from .errors import InvalidValue, NotFound
from .values import storage_problems

DELETED = "deleted"  # status of a deleted entity: kept for history, hidden from every read


@dataclass(frozen=True)
class EventMeta:
    """Where and when an event happened; all a fold needs besides the payload."""

    stream_version: int
    occurred_at: datetime

    @classmethod
    def of(cls, envelope: EventEnvelope) -> EventMeta:
        # MongoDB keeps milliseconds: truncating here makes responses equal to stored views
        at = envelope.occurred_at
        return cls(envelope.stream_version, at.replace(microsecond=at.microsecond // 1000 * 1000))


S = TypeVar("S")


def fold(evolve: Any, state: Any, tenant_id: str, recorded: Iterable[tuple[EventEnvelope, BaseModel]]) -> Any:
    """Apply recorded events in order (events that do not concern the aggregate leave it as is)."""
    for envelope, event in recorded:
        state = evolve(state, tenant_id, event, EventMeta.of(envelope)) or state
    return state


def stamps(meta: EventMeta, by: str) -> dict[str, Any]:
    """Who made a new entity and when, and the stream version it is at (the ETag)."""
    at = meta.occurred_at
    return {
        "created_at": at,
        "updated_at": at,
        "created_by": by,
        "updated_by": by,
        "version": meta.stream_version,
    }


def new_entity_fields(event: Any, tenant_id: str, meta: EventMeta) -> dict[str, Any]:
    """The state every named entity starts with, from its `...Created` event (active, as described)."""
    return {
        "tenant_id": tenant_id,
        "name": event.name,
        "description": event.description,
        "status": "active",
        "tags": list(event.tags),
        "metadata": dict(event.metadata),
        **stamps(meta, event.created_by),
    }


def touched(state: S, meta: EventMeta, by: str, **changes: Any) -> S:
    """`state` with `changes` applied by `by` at the event's time and stream version (the ETag)."""
    return replace(state, **changes, updated_at=meta.occurred_at, updated_by=by, version=meta.stream_version)


def set_fields(event: BaseModel, fields: Sequence[str]) -> dict[str, Any]:
    """The fields an update event sets (None = left unchanged)."""
    return {f: getattr(event, f) for f in fields if getattr(event, f) is not None}


def normalize_tags(tags: Iterable[str]) -> list[str]:
    """Tags without surrounding blanks, empties or duplicates, in the caller's order."""
    out: list[str] = []
    for tag in (t.strip() for t in tags):
        if tag and tag not in out:
            out.append(tag)
    return out


def require_storable(value: Any, loc: list[str | int]) -> None:
    """422 `invalid_value` naming each part of a free-form JSON value the database cannot store."""
    problems = storage_problems(value, loc)
    if problems:
        raise InvalidValue(problems)


class DeletedByStatus:
    """Mixin of an entity state dataclass: a deleted entity keeps its stream and view document,
    with status `deleted`, so that it is hidden from every read but not lost."""

    status: str

    @property
    def deleted(self) -> bool:
        return self.status == DELETED


class Deletable(Protocol):
    @property
    def deleted(self) -> bool: ...

    @property
    def version(self) -> int: ...


D = TypeVar("D", bound=Deletable)


def created_fields(cmd: Any) -> dict[str, Any]:
    """The fields of a `...Created` event every named entity shares, from its create command
    (tags normalized; metadata must be storable)."""
    require_storable(dict(cmd.metadata), ["body", "metadata"])
    return {
        "name": cmd.name,
        "description": cmd.description,
        "tags": normalize_tags(cmd.tags),
        "metadata": dict(cmd.metadata),
        "created_by": cmd.actor,
    }


def require_live(entity: D | None, kind: str, entity_id: str, precondition: Precondition | None = None) -> D:
    """The entity, or 404 `not_found` when it never existed or was deleted; with the caller's
    `If-Match` (`precondition`), 412 unless the entity is still at a version it names."""
    if entity is None or entity.deleted:
        raise NotFound(kind, entity_id)
    if precondition:
        precondition.check(entity.version)
    return entity


def changed_fields(state: Any, requested: Mapping[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    """The requested fields whose value differs from the current state (None = leave unchanged),
    tags normalized. Check them with `check_changes` (after any rule of the feature that comes first)."""
    unknown = set(requested) - set(allowed)
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    changes: dict[str, Any] = {}
    for name, value in requested.items():
        if value is None:
            continue
        if name == "tags":
            value = normalize_tags(value)
        if name == "metadata":
            value = dict(value)
        if getattr(state, name) != value:
            changes[name] = value
    return changes


def check_changes(changes: Mapping[str, Any], *, delete_refusal: str) -> None:
    """New metadata must be storable; status `deleted` is refused with `delete_refusal`, since
    deleting has its own command (and event)."""
    if "metadata" in changes:
        require_storable(changes["metadata"], ["body", "metadata"])
    if changes.get("status") == DELETED:
        raise ValueError(delete_refusal)
