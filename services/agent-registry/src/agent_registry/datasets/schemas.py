"""Request and response bodies of the dataset routes: one schema per purpose."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ailab_contracts.events.datasets import DatasetFormat, DatasetSchema
from ailab_contracts.events.registry import EntityStatus

from ..entrypoints.schemas import METADATA_DOC, TAGS_DOC, UNCHANGED_DOC, Description, Name, StrictBody, Tag
from .model import Dataset


class DatasetCreate(StrictBody):
    """A new dataset; upload its file (JSONL or CSV) with `POST .../upload`."""

    name: Name = Field(
        description="Display name; also the download's file name.", examples=["Support questions"]
    )
    description: Description | None = Field(
        default=None, description="Free text shown to people.", examples=["Tickets with the expected answer"]
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=TAGS_DOC, examples=[["eval"]])
    metadata: dict[str, Any] = Field(
        default_factory=dict, description=METADATA_DOC, examples=[{"source": "zendesk"}]
    )


class DatasetUpdate(StrictBody):
    """Fields to change; omitted fields keep their value. Upload a file to change the data."""

    name: Name | None = Field(default=None, description="Display name." + UNCHANGED_DOC)
    description: Description | None = Field(default=None, description="Free text." + UNCHANGED_DOC)
    tags: list[Tag] | None = Field(default=None, max_length=50, description=TAGS_DOC + " Replaces the list.")
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DOC + " Replaces the object.")
    status: EntityStatus | None = Field(
        default=None,
        description="Lifecycle status; an archived dataset accepts no uploads.",
        examples=["archived"],
    )


class DatasetOut(BaseModel):
    """A dataset and the facts of its current file (null/0 before the first upload)."""

    id: str = Field(description="Identifier, time-ordered.", examples=["dst_0192f3a4b5c6d1e2f3a4b5"])
    tenant_id: str = Field(examples=["demo"])
    name: str = Field(examples=["Support questions"])
    description: str | None = None
    status: EntityStatus = Field(examples=["active"])
    tags: list[str] = Field(examples=[["eval"]])
    metadata: dict[str, Any] = Field(examples=[{"source": "zendesk"}])
    format: DatasetFormat | None = Field(
        default=None, description="Format of the current file.", examples=["jsonl"]
    )
    row_count: int = Field(description="Examples in the current file.", examples=[1000])
    size_bytes: int = Field(description="Size of the current file.", examples=[52428800])
    content_sha256: str | None = Field(
        default=None,
        description="SHA-256 of the current file (hex); the download's ETag.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    dataset_schema: DatasetSchema | None = Field(
        default=None,
        alias="schema",
        description="Inferred from every row of the current file (also `files/schema.json`).",
    )
    upload_id: str | None = Field(
        default=None,
        description="Identifies the current file; changes with every upload.",
        examples=["upl_0192f3b0c1d2e3f4a5"],
    )
    uploaded_at: datetime | None = Field(default=None, description="When the current file was uploaded.")
    uploaded_by: str | None = Field(default=None, examples=["usr_01"])
    artifacts: list[str] = Field(
        description="Paths of the stored files (read them under `/files/{name}`).",
        examples=[["tenants/demo/datasets/dst_01/schema.json"]],
    )
    created_at: datetime
    updated_at: datetime
    created_by: str = Field(examples=["usr_01"])
    updated_by: str = Field(examples=["usr_01"])
    version: int = Field(
        description='Version of the dataset\'s event stream; the ETag is `"<version>"`.', examples=[3]
    )

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetOut:
        values = asdict(dataset)
        values["dataset_schema"] = values.pop("schema")
        return cls.model_validate(values)


class DatasetExampleOut(BaseModel):
    """One row of the dataset's current file."""

    index: int = Field(description="Row number in the file, from 0.", examples=[0])
    upload_id: str = Field(description="The file it comes from.", examples=["upl_0192f3b0c1d2e3f4a5"])
    data: dict[str, Any] = Field(
        description="The row: the JSONL object, or the CSV record keyed by the header (cells as text).",
        examples=[{"question": "How do I reset my password?", "expected": "Use the reset link"}],
    )
