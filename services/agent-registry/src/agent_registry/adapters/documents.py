"""How aggregate state is laid out in the view collections (`_id`, `tenant_id`, `_version`)."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..domain.model import Agent, AgentVersion, Project

PROJECTS = "projects"
AGENTS = "agents"
AGENT_VERSIONS = "agent_versions"
ARTIFACTS = "artifacts"
VIEWS = (PROJECTS, AGENTS, AGENT_VERSIONS, ARTIFACTS)


def version_key(agent_id: str, number: int) -> str:
    """`_id` of an agent version; zero-padded so that `_id` order is version order."""
    return f"{agent_id}:{number:010d}"


def utc(value: Any) -> Any:
    """Datetimes come back from the database naive: they are UTC."""
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def state_to_doc(key: str, state: Any, skip: tuple[str, ...] = ("id", "version")) -> dict[str, Any]:
    """The view document of a state dataclass of any feature area: `_id`, its fields, `_version`
    (the stream version the state reflects, which guards the projection's writes)."""
    body = {k: v for k, v in asdict(state).items() if k not in skip}
    return {"_id": key, **body, "_version": state.version}


def state_from_doc(cls: type[Any], doc: dict[str, Any], **known: Any) -> Any:
    """The state dataclass `cls` from its view document; `known` are the fields the layout renames."""
    values = {f.name: utc(doc.get(f.name)) for f in fields(cls) if f.name not in known}
    return cls(**values, **known)


E = TypeVar("E")


def entity_to_doc(state: Any) -> dict[str, Any]:
    """The view document of an entity state: its `id` is the `_id`, its `version` the `_version`."""
    return state_to_doc(state.id, state)


def entity_from_doc(cls: type[E], doc: dict[str, Any]) -> E:
    """The entity state `cls` from the view document `entity_to_doc` wrote."""
    entity: E = state_from_doc(cls, doc, id=doc["_id"], version=doc["_version"])
    return entity


def project_to_doc(project: Project) -> dict[str, Any]:
    return entity_to_doc(project)


def project_from_doc(doc: dict[str, Any]) -> Project:
    return entity_from_doc(Project, doc)


def agent_to_doc(agent: Agent) -> dict[str, Any]:
    return entity_to_doc(agent)


def agent_from_doc(doc: dict[str, Any]) -> Agent:
    return entity_from_doc(Agent, doc)


def agent_version_to_doc(version: AgentVersion) -> dict[str, Any]:
    return state_to_doc(version_key(version.agent_id, version.number), version, ("version",))


def agent_version_from_doc(doc: dict[str, Any]) -> AgentVersion:
    version: AgentVersion = state_from_doc(AgentVersion, doc, version=doc["_version"])
    return version
