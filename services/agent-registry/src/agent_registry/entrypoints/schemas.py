"""Request and response bodies of the HTTP API: one schema per purpose."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ailab_contracts.events.registry import EntityStatus, FlowGraph, VersionStatus

from ..domain.flow_graph import NODE_TYPES
from ..domain.model import Agent, AgentVersion, Project

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=4000)]
AgentType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=128)]

# field documentation every feature area's bodies share
TAGS_DOC = "Labels to filter lists by (`?tag=`); blanks and duplicates are dropped. At most 50."
METADATA_DOC = (
    "Free-form JSON object. Keys may not be empty, start with `$` or contain `.`; "
    "numbers must be finite and integers fit in 64 bits."
)
_DESCRIPTION = "Free text shown to people."
UNCHANGED_DOC = " Omit (or send null) to leave it unchanged."


class StrictBody(BaseModel):
    """A request body: unknown fields are refused (422) rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- projects -----------------------------------------------------------------------------------


class ProjectCreate(StrictBody):
    """A new project (a workspace grouping agents)."""

    name: Name = Field(description="Display name.", examples=["Support bot"])
    description: Description | None = Field(
        default=None, description=_DESCRIPTION, examples=["Agents answering support tickets"]
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=TAGS_DOC, examples=[["support"]])
    metadata: dict[str, Any] = Field(
        default_factory=dict, description=METADATA_DOC, examples=[{"team": "cx"}]
    )


class ProjectUpdate(StrictBody):
    """Fields to change; omitted fields keep their value."""

    name: Name | None = Field(
        default=None, description="Display name." + UNCHANGED_DOC, examples=["Support bot v2"]
    )
    description: Description | None = Field(default=None, description=_DESCRIPTION + UNCHANGED_DOC)
    tags: list[Tag] | None = Field(default=None, max_length=50, description=TAGS_DOC + " Replaces the list.")
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DOC + " Replaces the object.")
    status: EntityStatus | None = Field(default=None, description="Lifecycle status.", examples=["archived"])


class _EntityOut(BaseModel):
    id: str = Field(description="Identifier, time-ordered.", examples=["prj_0192f3a4b5c6d1e2f3a4b5"])
    tenant_id: str = Field(description="Owning tenant.", examples=["demo"])
    name: str = Field(examples=["Support bot"])
    description: str | None = Field(default=None, description=_DESCRIPTION)
    status: EntityStatus = Field(description="Lifecycle status.", examples=["active"])
    tags: list[str] = Field(examples=[["support"]])
    metadata: dict[str, Any] = Field(examples=[{"team": "cx"}])
    created_at: datetime = Field(description="When it was created (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")
    created_by: str = Field(description="Principal that created it.", examples=["usr_01"])
    updated_by: str = Field(description="Principal that changed it last.", examples=["usr_01"])
    version: int = Field(
        description='Version of the entity\'s event stream; the ETag is `"<version>"`.', examples=[1]
    )


class ProjectOut(_EntityOut):
    """A project."""

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls.model_validate(asdict(project))


# --- agents ---------------------------------------------------------------------------------------


class AgentCreate(StrictBody):
    """A new agent; publish versions of its flow under `/versions`."""

    name: Name = Field(description="Display name.", examples=["Triage agent"])
    description: Description | None = Field(
        default=None, description=_DESCRIPTION, examples=["Routes tickets to the right queue"]
    )
    project_id: EntityId | None = Field(
        default=None,
        description="Project of the same tenant it belongs to.",
        examples=["prj_0192f3a4b5c6d1e2f3a4b5"],
    )
    type: AgentType = Field(
        default="conversational", description="Kind of agent.", examples=["conversational", "workflow"]
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=TAGS_DOC, examples=[["triage"]])
    metadata: dict[str, Any] = Field(
        default_factory=dict, description=METADATA_DOC, examples=[{"owner": "cx"}]
    )


class AgentUpdate(StrictBody):
    """Fields to change; omitted fields keep their value."""

    name: Name | None = Field(default=None, description="Display name." + UNCHANGED_DOC)
    description: Description | None = Field(default=None, description=_DESCRIPTION + UNCHANGED_DOC)
    project_id: EntityId | None = Field(
        default=None, description="Move the agent to this project." + UNCHANGED_DOC
    )
    type: AgentType | None = Field(default=None, description="Kind of agent." + UNCHANGED_DOC)
    tags: list[Tag] | None = Field(default=None, max_length=50, description=TAGS_DOC + " Replaces the list.")
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DOC + " Replaces the object.")
    status: EntityStatus | None = Field(
        default=None,
        description="Lifecycle status; an archived agent accepts no new versions.",
        examples=["inactive"],
    )


class AgentOut(_EntityOut):
    """An agent."""

    id: str = Field(description="Identifier, time-ordered.", examples=["agt_0192f3a4b5c6d1e2f3a4b5"])
    project_id: str | None = Field(default=None, description="Project it belongs to.")
    type: str = Field(examples=["conversational"])
    latest_version: int | None = Field(
        default=None, description="Number of the newest version; null before the first publish.", examples=[3]
    )

    @classmethod
    def of(cls, agent: Agent) -> AgentOut:
        return cls.model_validate(asdict(agent))


# --- agent versions ------------------------------------------------------------------------------


class FlowNodeIn(StrictBody):
    id: str = Field(min_length=1, max_length=128, description="Unique within the graph.", examples=["draft"])
    type: str = Field(
        description="One of " + ", ".join(NODE_TYPES) + "; at most one `input` node.",
        examples=["llm"],
        json_schema_extra={"enum": list(NODE_TYPES)},
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Node settings. " + METADATA_DOC,
        examples=[{"model": "gpt-4o-mini", "temperature": 0.2}],
    )


class FlowEdgeIn(StrictBody):
    source: str = Field(
        min_length=1, max_length=128, description="Id of the node the edge leaves.", examples=["input"]
    )
    target: str = Field(
        min_length=1, max_length=128, description="Id of the node the edge enters.", examples=["draft"]
    )
    condition: str | None = Field(
        default=None, max_length=200, description="Branch label for condition nodes."
    )


class FlowGraphIn(StrictBody):
    """The agent's flow; stored as `flow-graph.json` of the version."""

    nodes: list[FlowNodeIn] = Field(max_length=1000, description="At least one node.")
    edges: list[FlowEdgeIn] = Field(
        default_factory=list, max_length=5000, description="Every source and target must be a node id."
    )


class AgentVersionCreate(StrictBody):
    """A new immutable version of the agent's flow and configuration, numbered after the latest."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "flow_graph": {
                        "nodes": [
                            {"id": "in", "type": "input"},
                            {"id": "draft", "type": "llm", "config": {"model": "gpt-4o-mini"}},
                            {"id": "out", "type": "output"},
                        ],
                        "edges": [{"source": "in", "target": "draft"}, {"source": "draft", "target": "out"}],
                    },
                    "config": {"temperature": 0.2},
                    "changelog": "First version",
                }
            ]
        },
    )

    flow_graph: FlowGraphIn = Field(
        description="The flow; validated (422 `invalid_flow_graph` lists every problem)."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Stored as `config.json`. " + METADATA_DOC
    )
    changelog: str | None = Field(
        default=None,
        max_length=10000,
        description="What changed in this version.",
        examples=["Lower temperature"],
    )


class AgentVersionUpdate(StrictBody):
    """Only the status and changelog of a version change; publish a new version to change its flow."""

    status: VersionStatus | None = Field(
        default=None, description="`deprecated` marks it as not to be used.", examples=["deprecated"]
    )
    changelog: str | None = Field(default=None, max_length=10000, description="What changed in this version.")

    @model_validator(mode="before")
    @classmethod
    def _flow_is_immutable(cls, data: Any) -> Any:
        if isinstance(data, dict) and ({"flow_graph", "config"} & data.keys()):
            raise ValueError(
                "flow_graph and config of a published version cannot change; publish a new version"
            )
        return data


class AgentVersionOut(BaseModel):
    """A published version of an agent."""

    id: str = Field(description="`<agent_id>:v<version>`.", examples=["agt_0192f3a4b5c6d1e2f3a4b5:v1"])
    tenant_id: str = Field(examples=["demo"])
    agent_id: str = Field(examples=["agt_0192f3a4b5c6d1e2f3a4b5"])
    version: int = Field(description="Version number: 1, 2, 3 ... per agent.", examples=[1])
    status: VersionStatus = Field(examples=["active"])
    flow_graph: FlowGraph
    config: dict[str, Any] = Field(examples=[{"temperature": 0.2}])
    changelog: str | None = None
    artifacts: list[str] = Field(
        description="Paths of the stored files (read them under `/files/{name}`).",
        examples=[
            [
                "tenants/demo/agents/agt_01/versions/1/flow-graph.json",
                "tenants/demo/agents/agt_01/versions/1/config.json",
            ]
        ],
    )
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    stream_version: int = Field(
        description="Version of the agent's event stream when this version last "
        'changed; its ETag is `"<stream_version>"`.',
        examples=[2],
    )

    @classmethod
    def of(cls, version: AgentVersion) -> AgentVersionOut:
        fields = asdict(version)
        number = fields.pop("number")
        return cls.model_validate(
            {**fields, "id": version.id, "version": number, "stream_version": version.version}
        )
