"""Events of datasets and their files (agent-registry, topic `ailab.registry.events`).

A dataset and its file are one event stream, `dataset:{tenant}:{dataset_id}`. The file's bytes and
its rows are stored by the registry under a fresh `upload_id` before `registry.DatasetFileUploaded`
is recorded, so readers switch to a new file atomically when that event lands; the same commit
carries a `usage.UsageRecorded` (meter `storage_mb`, the stored size's change in MB) that the
relay routes to `ailab.usage.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .registry import EntityStatus

DatasetFormat = Literal["jsonl", "csv"]
JsonType = Literal["string", "integer", "number", "boolean", "object", "array"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SchemaField(_Event):
    """What the rows of a dataset file hold under one top-level field."""

    name: str = Field(description="Field (JSONL key or CSV header).", examples=["question"])
    types: list[JsonType] = Field(
        description="JSON types of the non-null values seen, sorted. For CSV every value is text; the "
        "type says what all non-empty cells of the column read as: `integer` (all integers), `number` "
        "(integers and decimals), `boolean` (all true/false) or `string` (anything else).",
        examples=[["string"]],
    )
    nullable: bool = Field(description="Some row held null (JSONL) or an empty cell (CSV).", examples=[False])
    required: bool = Field(description="Every row has the field (always true for CSV).", examples=[True])
    example: Any = Field(
        default=None,
        description="First non-null value seen (long text cut to 200 characters; large objects "
        "and arrays left out).",
        examples=["What is 2 + 2?"],
    )


class DatasetSchema(_Event):
    """Schema inferred from every row of an uploaded file (`schema.json` of the dataset)."""

    fields: list[SchemaField] = Field(description="Top-level fields in order of first appearance.")
    truncated: bool = Field(
        default=False, description="The rows had more distinct fields than are listed (the limit is 1000)."
    )


class DatasetCreated(_Event):
    """A dataset was created, without a file yet."""

    dataset_id: str = Field(description="Identifier, time-ordered.", examples=["dst_0192f3a4b5c6d1e2f3"])
    name: str = Field(
        description="Display name (also the download's file name).", examples=["Support questions"]
    )
    description: str | None = Field(default=None, description="Free text.", examples=["Tickets with answers"])
    tags: list[str] = Field(default_factory=list, description="Labels lists filter by.", examples=[["eval"]])
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form JSON object.", examples=[{"source": "zendesk"}]
    )
    created_by: str = Field(description="Principal that created it.", examples=["usr_01"])


class DatasetUpdated(_Event):
    """Only the fields that changed are set (null = unchanged)."""

    dataset_id: str = Field(examples=["dst_0192f3a4b5c6d1e2f3"])
    name: str | None = Field(default=None, examples=["Support questions (2026)"])
    description: str | None = None
    tags: list[str] | None = Field(
        default=None, description="Replaces the list.", examples=[["eval", "nightly"]]
    )
    metadata: dict[str, Any] | None = Field(default=None, description="Replaces the object.")
    status: EntityStatus | None = Field(
        default=None, description="An archived dataset accepts no uploads.", examples=["archived"]
    )
    updated_by: str = Field(description="Principal that changed it.", examples=["usr_01"])


class DatasetFileUploaded(_Event):
    """A new file replaced the dataset's file (if any); its rows are examples 0 .. row_count-1."""

    dataset_id: str = Field(examples=["dst_0192f3a4b5c6d1e2f3"])
    upload_id: str = Field(
        description="Identifies the stored file and its examples; changes on every upload.",
        examples=["upl_0192f3a4b5c6d1e2f3"],
    )
    previous_upload_id: str | None = Field(
        default=None, description="The file this one replaced (deleted afterwards)."
    )
    format: DatasetFormat = Field(examples=["jsonl"])
    size_bytes: int = Field(ge=0, description="Exact size of the file.", examples=[52428800])
    content_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the file's bytes, hex.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    row_count: int = Field(ge=0, description="Rows (examples) in the file.", examples=[1000])
    schema_: DatasetSchema = Field(alias="schema", description="Inferred from every row.")
    uploaded_by: str = Field(examples=["usr_01"])

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)


class DatasetDeleted(_Event):
    """The dataset is gone from every read; its file and examples are deleted afterwards."""

    dataset_id: str = Field(examples=["dst_0192f3a4b5c6d1e2f3"])
    upload_id: str | None = Field(
        default=None,
        description="The file deleted with the dataset, if any.",
        examples=["upl_0192f3b0c1d2e3f4a5"],
    )
    size_bytes: int = Field(default=0, ge=0, description="Its size (the storage freed).", examples=[12345])
    deleted_by: str = Field(description="Principal that deleted it.", examples=["usr_01"])


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("registry.DatasetCreated", 1, DatasetCreated),
    ("registry.DatasetUpdated", 1, DatasetUpdated),
    ("registry.DatasetFileUploaded", 1, DatasetFileUploaded),
    ("registry.DatasetDeleted", 1, DatasetDeleted),
]

# (event_type, from_version, function turning a v(from_version) payload into v(from_version + 1))
UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
