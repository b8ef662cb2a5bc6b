"""Ports of the runs use cases (MongoDB adapters in `adapters/`, fakes in unit tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from ailab_contracts.events.runs import RunTotals

from ..domain.model import Run
from ..engine.spans import Span


class StreamConflict(Exception):
    """Another writer appended to the stream first."""


class EventRecorder(Protocol):
    async def record(
        self, stream_id: str, expected_version: int, tenant_id: str, events: Sequence[BaseModel]
    ) -> int:
        """Append as one commit; returns the stream's new version; raises StreamConflict."""
        ...


@dataclass(frozen=True)
class RunFilter:
    limit: int
    cursor: str | None = None
    agent_id: str | None = None
    status: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class RunViews(Protocol):
    async def get(self, tenant_id: str, run_id: str) -> Run | None: ...

    async def list(self, tenant_id: str, flt: RunFilter) -> tuple[list[Run], str | None]: ...

    async def active(self, limit: int = 1000) -> list[Run]:
        """Runs of every tenant still queued or running (for the orphan sweep)."""
        ...


class RunLogs(Protocol):
    async def append(self, entry: Mapping[str, Any]) -> None: ...

    async def flush(self) -> None:
        """Return once every entry appended before is stored (writes may be batched)."""

    async def page(
        self, tenant_id: str, run_id: str, cursor: str | None, limit: int, level: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def delete_run(self, tenant_id: str, run_id: str) -> None: ...


class RunSpans(Protocol):
    async def insert(self, tenant_id: str, run_id: str, span: Span) -> None: ...

    async def flush(self) -> None:
        """Return once every span inserted before is stored (writes may be batched)."""

    async def of_run(self, tenant_id: str, run_id: str, limit: int) -> list[dict[str, Any]]: ...

    async def delete_run(self, tenant_id: str, run_id: str) -> None: ...


class ExecutorLeases(Protocol):
    """Which executor process owns which run, and which processes are alive (heartbeats)."""

    async def claim(self, run_id: str, tenant_id: str, instance_id: str) -> None: ...

    async def owner(self, run_id: str) -> str | None: ...

    async def heartbeat(self, instance_id: str, at: datetime) -> None: ...

    async def alive(self, instance_id: str, since: datetime) -> bool: ...

    async def retire(self, instance_id: str) -> None: ...


class MeteredTotals(Protocol):
    async def totals(self, tenant_id: str, run_id: str) -> RunTotals:
        """What the usage already recorded for a run adds up to (for runs whose process died)."""
        ...


class PlanLookup(Protocol):
    async def plan(self, tenant_id: str) -> str | None: ...


@dataclass(frozen=True)
class AgentRef:
    agent_id: str
    tenant_id: str
    project_id: str | None
    latest_version: int | None
    deleted: bool


@dataclass(frozen=True)
class AgentVersionRef:
    agent_id: str
    version: int
    flow_graph: dict[str, Any]
    config: dict[str, Any]
    status: str


class AgentLookup(Protocol):
    async def agent(self, tenant_id: str, agent_id: str) -> AgentRef | None: ...

    async def version(self, tenant_id: str, agent_id: str, version: int) -> AgentVersionRef | None: ...
