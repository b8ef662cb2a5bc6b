"""Events of the agent registry (published on `ailab.registry.events`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EntityStatus = Literal["active", "inactive", "archived"]
NodeType = Literal["input", "llm", "tool", "condition", "transform", "output"]
VersionStatus = Literal["active", "deprecated"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProjectCreatedV1(_Event):
    """First published shape of ProjectCreated (kept to parse old events; upcast to v2)."""

    project_id: str
    name: str
    description: str | None = None
    created_by: str


class ProjectCreated(_Event):
    project_id: str = Field(examples=["prj_01"])
    name: str = Field(examples=["Support bot"])
    description: str | None = None
    tags: list[str] = Field(default_factory=list, description="Added in v2.", examples=[["support"]])
    metadata: dict[str, Any] = Field(default_factory=dict, description="Added in v2.")
    created_by: str


class ProjectUpdated(_Event):
    project_id: str
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    status: EntityStatus | None = None
    updated_by: str


class ProjectDeleted(_Event):
    project_id: str
    deleted_by: str


class AgentCreated(_Event):
    agent_id: str = Field(examples=["agt_01"])
    project_id: str | None = Field(default=None, examples=["prj_01"])
    name: str = Field(examples=["Triage agent"])
    description: str | None = None
    type: str = Field(default="conversational", examples=["conversational"])
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_by: str


class AgentUpdated(_Event):
    agent_id: str
    project_id: str | None = None
    name: str | None = None
    description: str | None = None
    type: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    status: EntityStatus | None = None
    updated_by: str


class AgentDeleted(_Event):
    agent_id: str
    deleted_by: str


class FlowNode(_Event):
    id: str = Field(examples=["draft"])
    type: NodeType = Field(examples=["llm"])
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"model": "gpt-4o-mini"}])


class FlowEdge(_Event):
    source: str = Field(examples=["input"])
    target: str = Field(examples=["draft"])
    condition: str | None = Field(default=None, description="Branch label for condition nodes.")


class FlowGraph(_Event):
    """The agent's flow (`flow-graph.json` in the artifact layout)."""

    nodes: list[FlowNode]
    edges: list[FlowEdge] = Field(default_factory=list)


class AgentVersionPublished(_Event):
    agent_id: str
    version: int = Field(ge=1, examples=[1])
    flow_graph: FlowGraph
    config: dict[str, Any] = Field(default_factory=dict, description="`config.json` of the version.")
    changelog: str | None = None
    created_by: str


class AgentVersionUpdated(_Event):
    agent_id: str
    version: int
    status: VersionStatus | None = None
    changelog: str | None = None
    updated_by: str


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("registry.ProjectCreated", 1, ProjectCreatedV1),
    ("registry.ProjectCreated", 2, ProjectCreated),
    ("registry.ProjectUpdated", 1, ProjectUpdated),
    ("registry.ProjectDeleted", 1, ProjectDeleted),
    ("registry.AgentCreated", 1, AgentCreated),
    ("registry.AgentUpdated", 1, AgentUpdated),
    ("registry.AgentDeleted", 1, AgentDeleted),
    ("registry.AgentVersionPublished", 1, AgentVersionPublished),
    ("registry.AgentVersionUpdated", 1, AgentVersionUpdated),
]


def upcast_project_created_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: tags and metadata were added with empty defaults."""
    return {**payload, "tags": [], "metadata": {}}
