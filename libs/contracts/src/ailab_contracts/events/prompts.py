"""Events of prompts and prompt versions (agent-registry, published on `ailab.registry.events`).

Every event of a prompt lives in the stream `prompt:{tenant_id}:{prompt_id}`: the prompt's own
changes, its immutable versions and the moves of its labels, in one order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .registry import EntityStatus

MessageRole = Literal["system", "user", "assistant", "tool"]
VariableType = Literal["string", "number", "integer", "boolean", "json"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PromptMessage(_Event):
    """One message of a chat prompt; `{{ name }}` placeholders may appear in `content`."""

    role: MessageRole = Field(description="Who speaks.", examples=["system"])
    content: str = Field(description="Text with placeholders.", examples=["You answer as {{ persona }}."])


class PromptVariable(_Event):
    """A variable a prompt version declares; rendering checks supplied values against `type`."""

    name: str = Field(description="Placeholder name (`{{ name }}`).", examples=["customer_name"])
    type: VariableType = Field(default="string", description="Type of the value.", examples=["string"])
    required: bool = Field(
        default=True, description="Must be supplied when rendering unless it has a default."
    )
    default: Any = Field(default=None, description="Value used when none is supplied (null: no default).")
    description: str | None = Field(default=None, description="What the variable is for.")


class PromptCreated(_Event):
    prompt_id: str = Field(description="Prompt id.", examples=["pmt_0192f3a4b5c6d1e2f3"])
    name: str = Field(description="Display name.", examples=["Support answer"])
    description: str | None = Field(default=None, description="Free text.")
    tags: list[str] = Field(default_factory=list, description="Labels for filtering.", examples=[["support"]])
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON object.")
    created_by: str = Field(description="Principal that created it.", examples=["usr_01"])


class PromptUpdated(_Event):
    """Only the fields that changed are set; null means unchanged."""

    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3"])
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    status: EntityStatus | None = Field(default=None, examples=["archived"])
    updated_by: str = Field(examples=["usr_01"])


class PromptDeleted(_Event):
    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3"])
    deleted_by: str = Field(examples=["usr_01"])


class PromptVersionCreated(_Event):
    """An immutable version: exactly one of `template` (text) and `messages` (chat) is set."""

    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3"])
    version: int = Field(ge=1, description="1, 2, 3 ... per prompt.", examples=[1])
    template: str | None = Field(
        default=None, description="Text prompt with `{{ name }}` placeholders.", examples=["Hello {{ name }}"]
    )
    messages: list[PromptMessage] | None = Field(default=None, description="Chat prompt.")
    variables: list[PromptVariable] = Field(default_factory=list, description="Declared variables.")
    model_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Model settings (model, temperature, max_tokens, top_p, stop ...).",
        examples=[{"model": "gpt-4o-mini", "temperature": 0.2}],
    )
    tags: list[str] = Field(default_factory=list)
    changelog: str | None = Field(default=None, description="What changed in this version.")
    created_by: str = Field(examples=["usr_01"])


class PromptLabelMoved(_Event):
    """A label (e.g. `production`) now points at `version`."""

    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3"])
    label: str = Field(description="Label name.", examples=["production"])
    version: int = Field(ge=1, description="Version the label points at now.", examples=[2])
    previous_version: int | None = Field(
        default=None, description="Version it pointed at before; null for a new label.", examples=[1]
    )
    moved_by: str = Field(examples=["usr_01"])


class PromptLabelRemoved(_Event):
    prompt_id: str = Field(examples=["pmt_0192f3a4b5c6d1e2f3"])
    label: str = Field(examples=["staging"])
    previous_version: int = Field(ge=1, description="Version it pointed at.", examples=[2])
    removed_by: str = Field(examples=["usr_01"])


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("registry.PromptCreated", 1, PromptCreated),
    ("registry.PromptUpdated", 1, PromptUpdated),
    ("registry.PromptDeleted", 1, PromptDeleted),
    ("registry.PromptVersionCreated", 1, PromptVersionCreated),
    ("registry.PromptLabelMoved", 1, PromptLabelMoved),
    ("registry.PromptLabelRemoved", 1, PromptLabelRemoved),
]

# (event_type, from_version, function turning a v(from_version) payload into v(from_version + 1))
UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
