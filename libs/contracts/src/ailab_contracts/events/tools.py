"""Events of tool definitions (agent-registry, published on `ailab.registry.events`).

Every event of a tool lives in the stream `tool:{tenant_id}:{tool_id}`. Secrets never appear in
these events: sensitive HTTP headers carry a `secret_ref` (the name of a tenant secret) instead of
a value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .registry import EntityStatus

ToolKind = Literal["http", "builtin"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretRef(_Event):
    """A header value resolved from the tenant's secrets when the tool is called."""

    secret_ref: str = Field(description="Name of the secret.", examples=["weather_api_key"])


class ToolDefinition(_Event):
    """Everything that defines a tool (shared by ToolCreated and ToolUpdated)."""

    name: str = Field(description="Name the model calls the tool by; unique per tenant.", examples=["search"])
    description: str | None = Field(default=None, description="What the tool does (shown to the model).")
    kind: ToolKind = Field(description="`http` calls an endpoint; `builtin` runs in the executor.")
    parameters: dict[str, Any] = Field(
        description="JSON Schema (type object) of the arguments.",
        examples=[{"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}],
    )
    method: HttpMethod | None = Field(default=None, description="HTTP method (http tools).", examples=["GET"])
    url_template: str | None = Field(
        default=None,
        description="URL with `{arg}` placeholders (http tools).",
        examples=["https://api.example.com/search?q={q}"],
    )
    headers: dict[str, str | SecretRef] = Field(
        default_factory=dict,
        description="Request headers: plain values, or `{secret_ref}` for anything sensitive.",
        examples=[{"Accept": "application/json", "Authorization": {"secret_ref": "example_token"}}],
    )
    builtin: str | None = Field(default=None, description="Built-in tool name.", examples=["calculator"])
    timeout_ms: int = Field(default=10000, ge=1, le=120000, description="Call timeout.")
    allowed_hosts: list[str] = Field(default_factory=list, description="Hosts the tool may call.")
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: EntityStatus = Field(default="active")


class ToolCreated(ToolDefinition):
    tool_id: str = Field(description="Tool id.", examples=["tol_0192f3a4b5c6d1e2f3"])
    created_by: str = Field(examples=["usr_01"])


class ToolUpdated(ToolDefinition):
    """The whole definition after the change (so that a field can also be cleared), and which
    fields changed."""

    tool_id: str = Field(examples=["tol_0192f3a4b5c6d1e2f3"])
    changed: list[str] = Field(description="Names of the fields that changed.", examples=[["timeout_ms"]])
    updated_by: str = Field(examples=["usr_01"])


class ToolDeleted(_Event):
    tool_id: str = Field(examples=["tol_0192f3a4b5c6d1e2f3"])
    name: str = Field(description="Name it had (free again).", examples=["search"])
    deleted_by: str = Field(examples=["usr_01"])


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("registry.ToolCreated", 1, ToolCreated),
    ("registry.ToolUpdated", 1, ToolUpdated),
    ("registry.ToolDeleted", 1, ToolDeleted),
]

# (event_type, from_version, function turning a v(from_version) payload into v(from_version + 1))
UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
