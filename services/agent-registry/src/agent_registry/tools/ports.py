"""Ports of the tool use cases: the read model, the name claims that keep names unique, the event
store probe and the recorder (MongoDB adapters in `store.py`, in-memory fakes in `memory.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ailab_runtime.ids import new_id

from ..application.ports import EventRecorder
from .domain import Tool


@dataclass(frozen=True)
class ToolFilter:
    limit: int = 50
    cursor: str | None = None
    status: str | None = None
    tag: str | None = None
    kind: str | None = None


class ToolViews(Protocol):
    """The `tools` read model, scoped by tenant. `tool` returns deleted tools too; lists never do."""

    async def tool(self, tenant_id: str, tool_id: str) -> Tool | None: ...

    async def tools(self, tenant_id: str, flt: ToolFilter) -> tuple[list[Tool], str | None]: ...


@dataclass(frozen=True)
class NameClaim:
    """Tool `tool_id` holds the name `name_key` (lower-cased) in its tenant."""

    name_key: str
    tool_id: str
    claim_id: str
    claimed_at: datetime


class ToolNameClaims(Protocol):
    """One document per (tenant, name key), only ever inserted or deleted: a duplicate key on
    insert is the uniqueness check, so two concurrent claims of a name cannot both succeed."""

    async def insert(self, tenant_id: str, claim: NameClaim) -> NameClaim | None:
        """Store `claim`; when the name is held already, return the holder's claim instead."""
        ...

    async def release(self, tenant_id: str, name_key: str, tool_id: str, claim_id: str | None = None) -> None:
        """Delete the claim of `name_key` if `tool_id` (and `claim_id`, when given) still hold it."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ToolPorts:
    views: ToolViews
    recorder: EventRecorder
    claims: ToolNameClaims
    stream_version: Callable[[str], Awaitable[int]]  # current version of an event stream (0: none)
    new_id: Callable[[str], str] = new_id
    clock: Callable[[], datetime] = utc_now
