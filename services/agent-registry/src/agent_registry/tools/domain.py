"""Tools as aggregates: state folded from events, commands, the rules deciding new events and the
errors a caller sees (pure, no I/O). A tool is the stream `tool:{tenant}:{tool_id}`.

Name uniqueness is not decided here: it is enforced by an insert-only claim document per
(tenant, lower-cased name) that the use cases take before recording (see `handlers.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from ailab_contracts.events.tools import ToolCreated, ToolDefinition, ToolDeleted, ToolUpdated

from ..domain import lifecycle
from ..domain.commands import Precondition
from ..domain.errors import RegistryError
from ..domain.lifecycle import DELETED, DeletedByStatus, EventMeta, normalize_tags
from ..domain.values import storage_problems
from .validation import BUILTINS, DEFAULT_TIMEOUT_MS, EMPTY_PARAMETERS, definition_problems, normalize_host

DEFINITION_FIELDS: tuple[str, ...] = tuple(ToolDefinition.model_fields)
HTTP_FIELDS = ("method", "url_template", "headers")
# fields a PUT may clear with an explicit null; for the others null means "unchanged"
NULLABLE_FIELDS = ("description", "method", "url_template", "builtin")
_EMPTY: dict[str, Any] = {"method": None, "url_template": None, "headers": {}, "builtin": None}


def tool_stream(tenant_id: str, tool_id: str) -> str:
    return f"tool:{tenant_id}:{tool_id}"


def name_key(name: str) -> str:
    """Names are unique per tenant regardless of case (`Search` and `search` clash)."""
    return name.lower()


# --- errors ---------------------------------------------------------------------------------------


class ToolError(RegistryError):
    """A rule of tools; `status` is the HTTP status it answers with."""

    status = 400


class InvalidTool(ToolError):
    code = "invalid_tool"
    status = 422

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"tool definition is invalid ({len(problems)} problem(s))", problems)


class ToolNameTaken(ToolError):
    code = "tool_name_taken"
    status = 409

    def __init__(self, name: str, tool_id: str) -> None:
        super().__init__(f"another tool of this tenant is named {name!r}", {"name": name, "tool_id": tool_id})


# --- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTool:
    """`definition` holds the fields of a tool (name, kind, parameters ...); omitted ones take
    their defaults (builtin tools default to the builtin's argument schema)."""

    tenant_id: str
    actor: str
    definition: Mapping[str, Any]


@dataclass(frozen=True)
class UpdateTool:
    """`changes` holds the fields given in the request (explicit nulls included)."""

    tenant_id: str
    tool_id: str
    actor: str
    changes: Mapping[str, Any]
    precondition: Precondition | None = None


@dataclass(frozen=True)
class DeleteTool:
    tenant_id: str
    tool_id: str
    actor: str
    precondition: Precondition | None = None


# --- state ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool(DeletedByStatus):
    id: str
    tenant_id: str
    name: str
    description: str | None
    kind: str
    parameters: dict[str, Any]
    method: str | None
    url_template: str | None
    headers: dict[str, Any]
    builtin: str | None
    timeout_ms: int
    allowed_hosts: list[str]
    tags: list[str]
    metadata: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int  # stream version this state reflects (the ETag)

    def definition(self) -> dict[str, Any]:
        state = asdict(self)
        return {f: state[f] for f in DEFINITION_FIELDS}


def _definition_of(event: ToolDefinition) -> dict[str, Any]:
    dumped = event.model_dump(mode="json")
    return {f: dumped[f] for f in DEFINITION_FIELDS}


def evolve_tool(state: Tool | None, tenant_id: str, event: BaseModel, meta: EventMeta) -> Tool | None:
    if isinstance(event, ToolCreated):
        if state is not None:
            return state
        return Tool(
            id=event.tool_id,
            tenant_id=tenant_id,
            **_definition_of(event),
            **lifecycle.stamps(meta, event.created_by),
        )
    if state is None:
        return None
    if isinstance(event, ToolUpdated):
        return lifecycle.touched(state, meta, event.updated_by, **_definition_of(event))
    if isinstance(event, ToolDeleted):
        return lifecycle.touched(state, meta, event.deleted_by, status=DELETED)
    return None


# --- rules ----------------------------------------------------------------------------------------


def require_live(tool: Tool | None, tool_id: str, precondition: Precondition | None = None) -> Tool:
    return lifecycle.require_live(tool, "tool", tool_id, precondition)


def _normalized(definition: dict[str, Any]) -> dict[str, Any]:
    out = dict(definition)
    out["tags"] = normalize_tags(out.get("tags") or [])
    out["allowed_hosts"] = list(dict.fromkeys(normalize_host(h) for h in out.get("allowed_hosts") or []))
    if isinstance(out.get("method"), str):
        out["method"] = out["method"].upper()
    return out


def _validated(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition as the event will carry it, or InvalidTool listing every problem."""
    definition = _normalized(definition)
    problems = definition_problems(definition)
    for field in ("parameters", "metadata"):
        problems.extend(
            p
            for p in storage_problems(definition.get(field), ["body", field])
            if not any(q["loc"] == p["loc"] for q in problems)
        )
    if problems:
        raise InvalidTool(problems)
    try:
        return _definition_of(ToolDefinition.model_validate(definition))
    except ValidationError as exc:  # a shape the schemas let through but the contract refuses
        raise InvalidTool(
            [
                {"code": "invalid_value", "message": e["msg"], "loc": ["body", *e["loc"]]}
                for e in exc.errors(include_url=False)
            ]
        ) from exc


def decide_create_tool(tool_id: str, cmd: CreateTool) -> ToolCreated:
    given = {k: v for k, v in cmd.definition.items() if v is not None}
    builtin = given.get("builtin")
    default_parameters = BUILTINS[builtin]["parameters"] if builtin in BUILTINS else EMPTY_PARAMETERS
    definition = {
        **_EMPTY,
        "description": None,
        "parameters": default_parameters,
        "timeout_ms": DEFAULT_TIMEOUT_MS,
        "allowed_hosts": [],
        "tags": [],
        "metadata": {},
        "status": "active",
        **given,
    }
    if definition.get("status") == DELETED:
        raise ValueError("a tool is created active, inactive or archived")
    return ToolCreated(tool_id=tool_id, created_by=cmd.actor, **_validated(definition))


def decide_update_tool(tool: Tool | None, cmd: UpdateTool) -> ToolUpdated | None:
    """The whole definition after applying `changes` (None when nothing changes). Switching `kind`
    clears the other kind's fields unless the request sets them (which is then an error)."""
    live = require_live(tool, cmd.tool_id, cmd.precondition)
    unknown = set(cmd.changes) - set(DEFINITION_FIELDS)
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    current = live.definition()
    changes = {k: v for k, v in cmd.changes.items() if v is not None or k in NULLABLE_FIELDS}
    if changes.get("status") == DELETED:
        raise ValueError("use DeleteTool to delete a tool")
    merged = {**current, **changes}
    if merged["kind"] != current["kind"]:
        other = HTTP_FIELDS if merged["kind"] == "builtin" else ("builtin",)
        merged.update({f: _EMPTY[f] for f in other if f not in changes})
    new = _validated(merged)
    changed = [f for f in DEFINITION_FIELDS if new[f] != current[f]]
    if not changed:
        return None
    return ToolUpdated(tool_id=live.id, changed=changed, updated_by=cmd.actor, **new)


def decide_delete_tool(tool: Tool | None, cmd: DeleteTool) -> ToolDeleted:
    live = require_live(tool, cmd.tool_id, cmd.precondition)
    return ToolDeleted(tool_id=live.id, name=live.name, deleted_by=cmd.actor)
