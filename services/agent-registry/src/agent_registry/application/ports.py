"""Ports the use cases depend on; adapters implement them (MongoDB views, the runtime's event store)
and unit tests use the in-memory fakes in `adapters.memory`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_runtime.ids import new_id

from ..domain.model import Agent, AgentVersion, Project


@dataclass(frozen=True)
class ListFilter:
    """One page of a list: keyset cursor, size and the optional filters."""

    limit: int = 50
    cursor: str | None = None
    status: str | None = None
    tag: str | None = None
    project_id: str | None = None


PageOf = tuple[list[Any], str | None]


class RegistryViews(Protocol):
    """Read models, always scoped by tenant. Single reads return deleted entities too (the use
    case decides what a caller sees); lists never do."""

    async def project(self, tenant_id: str, project_id: str) -> Project | None: ...

    async def projects(self, tenant_id: str, flt: ListFilter) -> tuple[list[Project], str | None]: ...

    async def agent(self, tenant_id: str, agent_id: str) -> Agent | None: ...

    async def agents(self, tenant_id: str, flt: ListFilter) -> tuple[list[Agent], str | None]: ...

    async def agent_version(self, tenant_id: str, agent_id: str, number: int) -> AgentVersion | None: ...

    async def agent_versions(
        self, tenant_id: str, agent_id: str, flt: ListFilter
    ) -> tuple[list[AgentVersion], str | None]: ...

    async def artifact(self, tenant_id: str, path: str) -> Any | None:
        """The stored JSON document at `path`, or None."""
        ...


class EventRecorder(Protocol):
    """Appends events to a stream as one commit. Raises `ailab_runtime.errors.ApiError` (409,
    `conflict`) when the stream is no longer at `expected_version`."""

    async def record(
        self, *, stream_id: str, expected_version: int, tenant_id: str, events: Sequence[BaseModel]
    ) -> Sequence[EventEnvelope]: ...


@dataclass(frozen=True)
class RegistryPorts:
    views: RegistryViews
    recorder: EventRecorder
    new_id: Callable[[str], str] = new_id
