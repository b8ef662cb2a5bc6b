"""How aggregate state is laid out in the view collections (`_id`, `tenant_id`, `_version`)."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from ..domain.model import Agent, AgentVersion, Project

PROJECTS = "projects"
AGENTS = "agents"
AGENT_VERSIONS = "agent_versions"
ARTIFACTS = "artifacts"
VIEWS = (PROJECTS, AGENTS, AGENT_VERSIONS, ARTIFACTS)


def version_key(agent_id: str, number: int) -> str:
    """`_id` of an agent version; zero-padded so that `_id` order is version order."""
    return f"{agent_id}:{number:010d}"


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _to_doc(key: str, state: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    body = {k: v for k, v in asdict(state).items() if k not in skip}
    return {"_id": key, **body, "_version": state.version}


def _from_doc(cls: type[Any], doc: dict[str, Any], **known: Any) -> Any:
    values = {f.name: _utc(doc.get(f.name)) for f in fields(cls) if f.name not in known}
    return cls(**values, **known)


def project_to_doc(project: Project) -> dict[str, Any]:
    return _to_doc(project.id, project, ("id", "version"))


def project_from_doc(doc: dict[str, Any]) -> Project:
    project: Project = _from_doc(Project, doc, id=doc["_id"], version=doc["_version"])
    return project


def agent_to_doc(agent: Agent) -> dict[str, Any]:
    return _to_doc(agent.id, agent, ("id", "version"))


def agent_from_doc(doc: dict[str, Any]) -> Agent:
    agent: Agent = _from_doc(Agent, doc, id=doc["_id"], version=doc["_version"])
    return agent


def agent_version_to_doc(version: AgentVersion) -> dict[str, Any]:
    return _to_doc(version_key(version.agent_id, version.number), version, ("version",))


def agent_version_from_doc(doc: dict[str, Any]) -> AgentVersion:
    version: AgentVersion = _from_doc(AgentVersion, doc, version=doc["_version"])
    return version
