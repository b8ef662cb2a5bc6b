"""Commands: what a caller asks the registry to do (imperative names, plain data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import PreconditionFailed


@dataclass(frozen=True)
class Precondition:
    """An `If-Match` header: `*` (any current version) or the versions the caller last saw."""

    versions: frozenset[int] = frozenset()
    any_version: bool = False

    def check(self, current_version: int) -> None:
        if not self.any_version and current_version not in self.versions:
            raise PreconditionFailed(current_version)


@dataclass(frozen=True)
class CreateProject:
    tenant_id: str
    actor: str
    name: str
    description: str | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateProject:
    """`changes` holds the fields to set (name, description, tags, metadata, status)."""

    tenant_id: str
    project_id: str
    actor: str
    changes: Mapping[str, Any]
    precondition: Precondition | None = None


@dataclass(frozen=True)
class DeleteProject:
    tenant_id: str
    project_id: str
    actor: str
    precondition: Precondition | None = None


@dataclass(frozen=True)
class CreateAgent:
    tenant_id: str
    actor: str
    name: str
    project_id: str | None = None
    description: str | None = None
    type: str = "conversational"
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateAgent:
    """`changes` holds the fields to set (project_id, name, description, type, tags, metadata, status)."""

    tenant_id: str
    agent_id: str
    actor: str
    changes: Mapping[str, Any]
    precondition: Precondition | None = None


@dataclass(frozen=True)
class DeleteAgent:
    tenant_id: str
    agent_id: str
    actor: str
    precondition: Precondition | None = None


@dataclass(frozen=True)
class PublishAgentVersion:
    tenant_id: str
    agent_id: str
    actor: str
    flow_graph: Mapping[str, Any]
    config: Mapping[str, Any] = field(default_factory=dict)
    changelog: str | None = None


@dataclass(frozen=True)
class UpdateAgentVersion:
    """`changes` holds `status` and/or `changelog`; the flow of a version never changes."""

    tenant_id: str
    agent_id: str
    version: int
    actor: str
    changes: Mapping[str, Any]
    precondition: Precondition | None = None
