"""Request and response bodies of the tool routes: one schema per purpose."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ailab_contracts.events.registry import EntityStatus
from ailab_contracts.events.tools import HttpMethod, ToolKind

from ..entrypoints.schemas import METADATA_DOC, TAGS_DOC, StrictBody, Tag
from .domain import Tool
from .validation import BUILTINS, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS, NAME, SECRET_REF

Host = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=260)]

_BUILTINS = "; ".join(f"`{name}`: {spec['description']}" for name, spec in BUILTINS.items())
_NAME = f"Name the model calls the tool by (`{NAME.pattern}`); unique per tenant, ignoring case."
_PARAMETERS = (
    "JSON Schema of the arguments: `type: object`, `properties` (schemas with types "
    "string/number/integer/boolean/object/array/null), `required` (declared names). Keywords starting "
    "with `$` (`$ref`, `$defs`, `$schema`) are not supported: inline definitions. Defaults to the builtin's "
    "schema for builtin tools and to an empty object schema for http tools."
)
_URL = (
    "http(s) URL with `{argument}` placeholders (declared properties of `parameters`) in the path or query; "
    "scheme, host and port are literal and the host must be allowed by `allowed_hosts`. No user info and no "
    "literal credentials (`api_key=...`) in the query."
)
_HEADERS = (
    'Header -> plain value, or `{"secret_ref": "<secret name>"}` resolved at call time. Sensitive headers '
    "(Authorization, Proxy-Authorization, X-Api-Key, Cookie, or names containing token/secret/key/auth) and "
    "credential-looking values (`Bearer ...`) must be secret references: secrets are never stored in clear."
)
_HOSTS = (
    "Hosts the tool may call: names (`api.example.com`), subdomain wildcards (`*.example.com`) or IP "
    "addresses. "
    "Wildcards never match IP addresses, so private or loopback addresses must be listed exactly."
)


class SecretRefIn(StrictBody):
    secret_ref: str = Field(
        max_length=128,
        description=f"Name of a tenant secret (`{SECRET_REF.pattern}`).",
        examples=["search_api_token"],
    )


class ToolCreate(StrictBody):
    """A new tool: `kind: http` (method, url_template, headers) or `kind: builtin` (builtin)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "weather",
                    "description": "Current weather for a city",
                    "kind": "http",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "description": "City name"}},
                        "required": ["city"],
                    },
                    "method": "GET",
                    "url_template": "https://api.weather.example.com/v1/current?city={city}",
                    "headers": {
                        "Accept": "application/json",
                        "Authorization": {"secret_ref": "weather_token"},
                    },
                    "timeout_ms": 5000,
                    "allowed_hosts": ["api.weather.example.com"],
                    "tags": ["weather"],
                },
                {"name": "calc", "kind": "builtin", "builtin": "calculator"},
            ]
        },
    )

    name: str = Field(max_length=64, description=_NAME, examples=["weather"])
    description: str | None = Field(
        default=None, max_length=4000, description="What the tool does (shown to the model)."
    )
    kind: ToolKind = Field(description="`http` calls an endpoint; `builtin` runs inside the executor.")
    parameters: dict[str, Any] | None = Field(default=None, description=_PARAMETERS)
    method: HttpMethod | None = Field(default=None, description="HTTP method (http tools).", examples=["GET"])
    url_template: str | None = Field(default=None, max_length=4096, description=_URL)
    headers: dict[str, str | SecretRefIn] = Field(default_factory=dict, max_length=50, description=_HEADERS)
    builtin: str | None = Field(
        default=None,
        max_length=64,
        description="Builtin tool (builtin tools): " + _BUILTINS,
        examples=["calculator"],
        json_schema_extra={"enum": list(BUILTINS)},
    )
    timeout_ms: int = Field(
        default=10_000, ge=MIN_TIMEOUT_MS, le=MAX_TIMEOUT_MS, description="Call timeout in milliseconds."
    )
    allowed_hosts: list[Host] = Field(default_factory=list, max_length=50, description=_HOSTS)
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=TAGS_DOC)
    metadata: dict[str, Any] = Field(default_factory=dict, description=METADATA_DOC)
    status: EntityStatus = Field(default="active", description="Lifecycle status.")


class ToolUpdate(StrictBody):
    """Fields to change; omitted fields keep their value. `null` clears description, method,
    url_template and builtin (and leaves the other fields unchanged). Switching `kind` clears the
    other kind's fields. The result is validated like a new tool."""

    name: str | None = Field(default=None, max_length=64, description=_NAME)
    description: str | None = Field(default=None, max_length=4000)
    kind: ToolKind | None = None
    parameters: dict[str, Any] | None = Field(default=None, description=_PARAMETERS)
    method: HttpMethod | None = None
    url_template: str | None = Field(default=None, max_length=4096, description=_URL)
    headers: dict[str, str | SecretRefIn] | None = Field(
        default=None, max_length=50, description=_HEADERS + " Replaces the map."
    )
    builtin: str | None = Field(default=None, max_length=64, json_schema_extra={"enum": list(BUILTINS)})
    timeout_ms: int | None = Field(default=None, ge=MIN_TIMEOUT_MS, le=MAX_TIMEOUT_MS)
    allowed_hosts: list[Host] | None = Field(
        default=None, max_length=50, description=_HOSTS + " Replaces the list."
    )
    tags: list[Tag] | None = Field(default=None, max_length=50, description=TAGS_DOC + " Replaces the list.")
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DOC + " Replaces the object.")
    status: EntityStatus | None = None


class SecretRefOut(BaseModel):
    secret_ref: str = Field(examples=["weather_token"])


class ToolOut(BaseModel):
    """A tool definition (secret headers appear as their `secret_ref`, never as values)."""

    id: str = Field(description="Identifier, time-ordered.", examples=["tol_0192f3a4b5c6d1e2f3a4b5"])
    tenant_id: str = Field(examples=["demo"])
    name: str = Field(examples=["weather"])
    description: str | None = None
    kind: ToolKind
    parameters: dict[str, Any] = Field(
        examples=[{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}]
    )
    method: HttpMethod | None = None
    url_template: str | None = None
    headers: dict[str, str | SecretRefOut]
    builtin: str | None = None
    timeout_ms: int = Field(examples=[10000])
    allowed_hosts: list[str] = Field(examples=[["api.weather.example.com"]])
    tags: list[str]
    metadata: dict[str, Any]
    status: EntityStatus = Field(examples=["active"])
    created_at: datetime
    updated_at: datetime
    created_by: str = Field(examples=["usr_01"])
    updated_by: str = Field(examples=["usr_01"])
    version: int = Field(
        description='Version of the tool\'s event stream; the ETag is `"<version>"`.', examples=[1]
    )

    @classmethod
    def of(cls, tool: Tool) -> ToolOut:
        return cls.model_validate(asdict(tool))
