"""Request and response bodies of the prompt routes: one schema per purpose."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ailab_contracts.events.prompts import MessageRole, VariableType
from ailab_contracts.events.registry import EntityStatus, VersionStatus

from ..entrypoints.schemas import METADATA_DOC, TAGS_DOC, UNCHANGED_DOC, Description, Name, StrictBody, Tag
from .domain import LABEL_NAME, Prompt, PromptVersion, artifact_prefix
from .template import VARIABLE_NAME, VARIABLE_TYPES

LabelName = Annotated[str, StringConstraints(min_length=1, max_length=40)]

TEMPLATE_SYNTAX = (
    "`{{ name }}` is replaced by the variable `name` (names match `" + VARIABLE_NAME.pattern + "`); "
    "`\\{{` writes a literal `{{`; single braces are literal. No filters, expressions or code: any "
    "other `{{` is rejected. Strings are inserted as they are; numbers, booleans and `json` variables "
    "as JSON. Inserted values are not scanned again."
)


# --- prompts --------------------------------------------------------------------------------------


class PromptCreate(StrictBody):
    """A new prompt; add its text as immutable versions under `/versions`."""

    name: Name = Field(description="Display name.", examples=["Support answer"])
    description: Description | None = Field(
        default=None, description="Free text shown to people.", examples=["Answers a support ticket"]
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=TAGS_DOC, examples=[["support"]])
    metadata: dict[str, Any] = Field(
        default_factory=dict, description=METADATA_DOC, examples=[{"team": "cx"}]
    )


class PromptUpdate(StrictBody):
    """Fields to change; omitted fields keep their value. Versions and labels have their own routes."""

    name: Name | None = Field(default=None, description="Display name." + UNCHANGED_DOC)
    description: Description | None = Field(default=None, description="Free text." + UNCHANGED_DOC)
    tags: list[Tag] | None = Field(default=None, max_length=50, description=TAGS_DOC + " Replaces the list.")
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DOC + " Replaces the object.")
    status: EntityStatus | None = Field(
        default=None,
        description="Lifecycle status; an archived prompt accepts no new versions.",
        examples=["archived"],
    )


class PromptOut(BaseModel):
    """A prompt."""

    id: str = Field(description="Identifier, time-ordered.", examples=["pmt_0192f3a4b5c6d1e2f3a4b5"])
    tenant_id: str = Field(examples=["demo"])
    name: str = Field(examples=["Support answer"])
    description: str | None = None
    status: EntityStatus = Field(examples=["active"])
    tags: list[str] = Field(examples=[["support"]])
    metadata: dict[str, Any] = Field(examples=[{"team": "cx"}])
    labels: dict[str, int] = Field(
        description="Label -> version number it points at (`latest` is implicit and not listed).",
        examples=[{"production": 2, "staging": 3}],
    )
    latest_version: int | None = Field(
        default=None, description="Newest version; null before the first one.", examples=[3]
    )
    created_at: datetime
    updated_at: datetime
    created_by: str = Field(examples=["usr_01"])
    updated_by: str = Field(examples=["usr_01"])
    version: int = Field(
        description="Version of the prompt's event stream (new versions and label moves advance it too); "
        'the ETag is `"<version>"`.',
        examples=[4],
    )

    @classmethod
    def of(cls, prompt: Prompt) -> PromptOut:
        return cls.model_validate(asdict(prompt))


# --- versions -------------------------------------------------------------------------------------


class MessageIn(StrictBody):
    role: MessageRole = Field(description="Who speaks.", examples=["system"])
    content: str = Field(
        max_length=100_000, description="Text; " + TEMPLATE_SYNTAX, examples=["Be {{ tone }}."]
    )


class VariableIn(StrictBody):
    """A declared variable. Its name and type are checked with the template (422 `invalid_prompt`)."""

    name: str = Field(
        max_length=200, description=f"Matches `{VARIABLE_NAME.pattern}`.", examples=["customer_name"]
    )
    type: str = Field(
        default="string",
        description="One of " + ", ".join(VARIABLE_TYPES) + ".",
        examples=["string"],
        json_schema_extra={"enum": list(VARIABLE_TYPES)},
    )
    required: bool = Field(
        default=True, description="Rendering without a value is an error (unless there is a default)."
    )
    default: Any = Field(default=None, description="Used when no value is given; must match `type`.")
    description: str | None = Field(default=None, max_length=2000, description="What it is for.")


class PromptVersionCreate(StrictBody):
    """A new immutable version, numbered after the latest: exactly one of `template` and `messages`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {"role": "system", "content": "You are a {{ tone }} support agent."},
                        {"role": "user", "content": "Ticket from {{ customer_name }}: {{ ticket }}"},
                    ],
                    "variables": [
                        {"name": "tone", "type": "string", "required": False, "default": "friendly"},
                        {"name": "customer_name", "type": "string"},
                        {"name": "ticket", "type": "string"},
                    ],
                    "model_params": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 400},
                    "changelog": "Friendlier tone",
                    "labels": ["staging"],
                }
            ]
        },
    )

    template: str | None = Field(
        default=None,
        max_length=100_000,
        description="Text prompt. " + TEMPLATE_SYNTAX,
        examples=["Summarize for {{ audience }}:\n{{ text }}"],
    )
    messages: list[MessageIn] | None = Field(default=None, max_length=200, description="Chat prompt.")
    variables: list[VariableIn] = Field(
        default_factory=list,
        max_length=100,
        description="Every placeholder must be declared; declared but unused variables are only "
        "warned about.",
    )
    model_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Model settings stored with the version (model, temperature, max_tokens, top_p, "
        "stop ...). " + METADATA_DOC,
        examples=[{"model": "gpt-4o-mini", "temperature": 0.2}],
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=TAGS_DOC)
    changelog: str | None = Field(
        default=None, max_length=10_000, description="What changed in this version."
    )
    labels: list[LabelName] = Field(
        default_factory=list,
        max_length=10,
        description=f"Labels to point at the new version (names match `{LABEL_NAME.pattern}`).",
        examples=[["staging"]],
    )


class MessageOut(BaseModel):
    role: MessageRole
    content: str


class VariableOut(BaseModel):
    name: str = Field(examples=["customer_name"])
    type: VariableType = Field(examples=["string"])
    required: bool
    default: Any = None
    description: str | None = None


class Problem(BaseModel):
    code: str = Field(examples=["unused_variable"])
    message: str
    loc: list[str | int] = Field(examples=[["body", "variables", 2]])
    name: str | None = Field(default=None, description="Variable concerned.")


class PromptVersionOut(BaseModel):
    """An immutable version of a prompt."""

    id: str = Field(description="`<prompt_id>:v<version>`.", examples=["pmt_0192f3a4b5c6d1e2f3a4b5:v2"])
    tenant_id: str = Field(examples=["demo"])
    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3a4b5"])
    version: int = Field(description="1, 2, 3 ... per prompt.", examples=[2])
    status: VersionStatus = Field(examples=["active"])
    type: Literal["text", "chat"] = Field(description="`text` (template) or `chat` (messages).")
    template: str | None = None
    messages: list[MessageOut] | None = None
    variables: list[VariableOut]
    model_params: dict[str, Any] = Field(examples=[{"model": "gpt-4o-mini", "temperature": 0.2}])
    tags: list[str]
    changelog: str | None = None
    labels: list[str] = Field(
        description="Labels pointing at this version now (`latest` for the newest).",
        examples=[["production", "latest"]],
    )
    warnings: list[Problem] = Field(description="Declared variables that no placeholder uses.")
    artifact_path: str = Field(
        description="Where the version lives in the artifact layout; this response holds all of it.",
        examples=["tenants/demo/prompts/pmt_01/versions/2/"],
    )
    created_at: datetime
    created_by: str = Field(examples=["usr_01"])
    stream_version: int = Field(
        description="Version of the prompt's event stream when this version was created.", examples=[3]
    )

    @classmethod
    def of(cls, version: PromptVersion, prompt: Prompt, warnings: list[dict[str, Any]]) -> PromptVersionOut:
        return cls(
            id=version.id,
            tenant_id=version.tenant_id,
            prompt_id=version.prompt_id,
            version=version.number,
            status=version.status,  # type: ignore[arg-type]
            type="text" if version.template is not None else "chat",
            template=version.template,
            messages=[MessageOut.model_validate(m) for m in version.messages]
            if version.messages is not None
            else None,
            variables=[VariableOut.model_validate(v) for v in version.variables],
            model_params=version.model_params,
            tags=version.tags,
            changelog=version.changelog,
            labels=prompt.labels_of(version.number),
            warnings=[Problem.model_validate(w) for w in warnings],
            artifact_path=artifact_prefix(version.tenant_id, version.prompt_id, version.number),
            created_at=version.created_at,
            created_by=version.created_by,
            stream_version=version.version,
        )


# --- labels, render, diff -------------------------------------------------------------------------


class LabelMove(StrictBody):
    """Point the label at this version."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 2}]})

    version: int = Field(ge=1, le=1_000_000_000, description="An existing version number.", examples=[2])


class RenderRequest(StrictBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"variables": {"customer_name": "Ada", "ticket": "My invoice is wrong"}}]
        },
    )

    variables: dict[str, Any] = Field(
        default_factory=dict, description="Value of each variable; declared defaults fill the rest."
    )


class RenderOut(BaseModel):
    """The version's text (or messages) with every placeholder substituted."""

    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3a4b5"])
    version: int = Field(description="Version rendered (a label is resolved to its number).", examples=[2])
    rendered: str | list[MessageOut] = Field(
        description="Text of a text prompt, messages of a chat prompt.",
        examples=[[{"role": "user", "content": "Ticket from Ada: My invoice is wrong"}]],
    )
    variables_used: dict[str, Any] = Field(
        description="Value substituted for each variable (supplied or default).",
        examples=[{"tone": "friendly", "customer_name": "Ada", "ticket": "My invoice is wrong"}],
    )
    model_params: dict[str, Any] = Field(description="The version's model settings, to call the model with.")


class VersionRef(BaseModel):
    ref: str = Field(
        description="What the request named: a number, a label or `latest`.", examples=["production"]
    )
    version: int = Field(description="Version number it resolved to.", examples=[2])


class VariableChange(BaseModel):
    name: str
    changes: dict[str, dict[str, Any]] = Field(
        description="Field -> `{from, to}`.", examples=[{"default": {"from": "formal", "to": "friendly"}}]
    )


class VariableChanges(BaseModel):
    added: list[VariableOut]
    removed: list[VariableOut]
    changed: list[VariableChange]


class MappingChanges(BaseModel):
    added: dict[str, Any] = Field(examples=[{"top_p": 0.9}])
    removed: dict[str, Any] = Field(examples=[{"stop": ["\n\n"]}])
    changed: dict[str, dict[str, Any]] = Field(examples=[{"temperature": {"from": 0.7, "to": 0.2}}])


class PromptDiffOut(BaseModel):
    """What changed from one version to another."""

    model_config = ConfigDict(populate_by_name=True)

    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3a4b5"])
    from_: VersionRef = Field(alias="from")
    to: VersionRef
    kind_changed: bool = Field(description="One is a text prompt and the other a chat prompt.")
    text_changed: bool
    text_diff: str = Field(
        description="Unified diff of the texts (chat messages as `[role]` lines followed by their content); "
        '"" when equal.',
        examples=["--- pmt_01:v1\n+++ pmt_01:v2\n@@ -1 +1 @@\n-Hello {{ name }}\n+Hi {{ name }}!\n"],
    )
    variables: VariableChanges
    model_params: MappingChanges
