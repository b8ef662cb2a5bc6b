"""In-memory fakes of the ports, for unit tests of the use cases (no I/O).

`InMemoryRegistry` is both the `EventRecorder` (with the event store's optimistic concurrency)
and the `RegistryViews` (folding events with the same domain functions the projections use)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from ailab_contracts import REGISTRY, EventEnvelope, new_envelope
from ailab_contracts.events.registry import (
    AgentVersionPublished,
    ProjectCreated,
    ProjectDeleted,
    ProjectUpdated,
)
from ailab_runtime.errors import ApiError
from ailab_runtime.pagination import decode_cursor, encode_cursor

from ..application.ports import ListFilter
from ..domain.model import (
    Agent,
    AgentVersion,
    EventMeta,
    Project,
    artifact_documents,
    artifact_path,
    evolve_agent,
    evolve_agent_version,
    evolve_project,
)
from .documents import version_key


def _page(items: list[tuple[str, Any]], flt: ListFilter) -> tuple[list[Any], str | None]:
    after = decode_cursor(flt.cursor)
    ordered = sorted((kv for kv in items if after is None or kv[0] > after), key=lambda kv: kv[0])
    page = ordered[: flt.limit]
    next_cursor = encode_cursor(page[-1][0]) if len(ordered) > flt.limit else None
    return [v for _, v in page], next_cursor


def _matches(entity: Project | Agent, flt: ListFilter) -> bool:
    if entity.status != (flt.status or entity.status) or entity.deleted:
        return False
    if flt.tag and flt.tag not in entity.tags:
        return False
    return not (flt.project_id and getattr(entity, "project_id", None) != flt.project_id)


def sequential_ids() -> Callable[[str], str]:
    """A `new_id` for unit tests: `<prefix>_0001`, `<prefix>_0002`, ... in call order (predictable)."""
    counter = iter(range(1, 10_000))
    return lambda prefix: f"{prefix}_{next(counter):04d}"


class InMemoryEventStore:
    """The event store's append for every in-memory fake of an `EventRecorder`: the same optimistic
    concurrency (409 `conflict` unless the stream is at `expected_version`) and envelopes; each fake
    folds what is recorded into its views in `_apply`."""

    def __init__(self) -> None:
        self.streams: dict[str, list[EventEnvelope]] = {}
        self.fail_next_record: Exception | None = None  # the next `record` raises it, recording nothing

    async def record(
        self, *, stream_id: str, expected_version: int, tenant_id: str, events: Sequence[BaseModel]
    ) -> Sequence[EventEnvelope]:
        if self.fail_next_record is not None:
            exc, self.fail_next_record = self.fail_next_record, None
            raise exc
        stream = self.streams.setdefault(stream_id, [])
        if len(stream) != expected_version:
            raise ApiError(
                409,
                "conflict",
                "the resource was changed by another request; retry",
                {"stream_id": stream_id},
            )
        envelopes = [
            new_envelope(
                REGISTRY,
                event,
                stream_id=stream_id,
                stream_version=expected_version + i,
                tenant_id=tenant_id,
                producer="agent-registry",
            )
            for i, event in enumerate(events, start=1)
        ]
        stream.extend(envelopes)
        for envelope, event in zip(envelopes, events, strict=True):
            self._apply(envelope, event)
        return envelopes

    def _apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        raise NotImplementedError


class InMemoryRegistry(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self._projects: dict[tuple[str, str], Project] = {}
        self._agents: dict[tuple[str, str], Agent] = {}
        self._versions: dict[tuple[str, str], AgentVersion] = {}
        self._artifacts: dict[tuple[str, str], Any] = {}

    # --- EventRecorder -------------------------------------------------------------------------
    def _apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        tenant, meta = envelope.tenant_id, EventMeta.of(envelope)
        if isinstance(event, ProjectCreated | ProjectUpdated | ProjectDeleted):
            key = (tenant, event.project_id)
            if (project := evolve_project(self._projects.get(key), tenant, event, meta)) is not None:
                self._projects[key] = project
        if agent_id := getattr(event, "agent_id", None):
            key = (tenant, agent_id)
            if (agent := evolve_agent(self._agents.get(key), tenant, event, meta)) is not None:
                self._agents[key] = agent
            if (number := getattr(event, "version", None)) is not None:
                vkey = (tenant, version_key(agent_id, number))
                if (
                    version := evolve_agent_version(self._versions.get(vkey), tenant, event, meta)
                ) is not None:
                    self._versions[vkey] = version
        if isinstance(event, AgentVersionPublished):
            for name, content in artifact_documents(event).items():
                self._artifacts[(tenant, artifact_path(tenant, event.agent_id, event.version, name))] = (
                    content
                )

    # --- RegistryViews ------------------------------------------------------------------------
    async def project(self, tenant_id: str, project_id: str) -> Project | None:
        return self._projects.get((tenant_id, project_id))

    async def projects(self, tenant_id: str, flt: ListFilter) -> tuple[list[Project], str | None]:
        return _page(
            [(k, p) for (t, k), p in self._projects.items() if t == tenant_id and _matches(p, flt)], flt
        )

    async def agent(self, tenant_id: str, agent_id: str) -> Agent | None:
        return self._agents.get((tenant_id, agent_id))

    async def agents(self, tenant_id: str, flt: ListFilter) -> tuple[list[Agent], str | None]:
        return _page(
            [(k, a) for (t, k), a in self._agents.items() if t == tenant_id and _matches(a, flt)], flt
        )

    async def agent_version(self, tenant_id: str, agent_id: str, number: int) -> AgentVersion | None:
        return self._versions.get((tenant_id, version_key(agent_id, number)))

    async def agent_versions(
        self, tenant_id: str, agent_id: str, flt: ListFilter
    ) -> tuple[list[AgentVersion], str | None]:
        items = [
            (k, v)
            for (t, k), v in self._versions.items()
            if t == tenant_id and v.agent_id == agent_id and (not flt.status or v.status == flt.status)
        ]
        return _page(items, flt)

    async def artifact(self, tenant_id: str, path: str) -> Any | None:
        return self._artifacts.get((tenant_id, path))
