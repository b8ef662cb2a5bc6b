"""Datasets as aggregates: state folded from events, commands, the rules deciding new events, the
plan limits and the storage arithmetic (pure, no I/O).

A dataset and its file are one event stream, `dataset:{tenant}:{dataset_id}`; the dataset's
`version` is that stream's version (its ETag). A file upload records `registry.DatasetFileUploaded`
and `usage.UsageRecorded` (meter `storage_mb`) in one commit, so both move the version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, Literal

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_contracts.events.datasets import (
    DatasetCreated,
    DatasetDeleted,
    DatasetFileUploaded,
    DatasetSchema,
    DatasetUpdated,
)
from ailab_contracts.events.usage import UsageRecorded

from ..domain import lifecycle
from ..domain.commands import Precondition
from ..domain.errors import RegistryError
from ..domain.lifecycle import DELETED, DeletedByStatus, EventMeta

STREAM_PREFIX = "dataset"
DATASET_FIELDS = ("name", "description", "tags", "metadata", "status")
SCHEMA_FILE = "schema.json"
ARTIFACT_NAMES: tuple[str, ...] = (SCHEMA_FILE,)
FORMATS: tuple[str, ...] = ("jsonl", "csv")
FILE_EXTENSIONS = {"jsonl": "jsonl", "csv": "csv"}
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}

# Upload size limit per plan, in bytes (decimal megabytes, like the `storage_mb` meter): free 10 MB,
# pro 100 MB, enterprise 1 GB. A tenant whose plan the registry has not learned yet gets the free limit.
MB = 1_000_000
PLAN_UPLOAD_LIMITS: dict[str, int] = {"free": 10 * MB, "pro": 100 * MB, "enterprise": 1000 * MB}
DEFAULT_PLAN = "free"

UsageAction = Literal["upload", "replace", "delete"]


def dataset_stream(tenant_id: str, dataset_id: str) -> str:
    return f"{STREAM_PREFIX}:{tenant_id}:{dataset_id}"


def dataset_id_of_stream(stream_id: str) -> str | None:
    """The dataset id of a `dataset:{tenant}:{id}` stream, or None for any other stream."""
    kind, _, rest = stream_id.partition(":")
    if kind != STREAM_PREFIX or ":" not in rest:
        return None
    return rest.rsplit(":", 1)[1]


def artifact_path(tenant_id: str, dataset_id: str, name: str) -> str:
    """Where the specification's artifact layout puts a dataset file (`tenants/{t}/datasets/{id}/...`)."""
    return f"tenants/{tenant_id}/datasets/{dataset_id}/{name}"


def upload_limit(plan: str | None) -> int:
    """Largest file (bytes) a tenant on `plan` may upload; unknown plans get the free limit."""
    return PLAN_UPLOAD_LIMITS.get(plan or DEFAULT_PLAN, PLAN_UPLOAD_LIMITS[DEFAULT_PLAN])


def megabytes(size_bytes: int) -> Decimal:
    """`size_bytes` in decimal megabytes (1 MB = 1,000,000 bytes), exactly: 12_345 -> 0.012345."""
    with localcontext() as ctx:
        ctx.prec = 60  # far beyond any int64 byte count: the quotient is always exact
        value = Decimal(size_bytes) / Decimal(MB)
    return value


def filename(name: str, fmt: str) -> str:
    """`<name>.<ext>` with only characters that are safe in any `Content-Disposition`."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_. ") else "_" for c in name).strip(" .")
    return f"{safe or 'dataset'}.{FILE_EXTENSIONS[fmt]}"


# --- errors ---------------------------------------------------------------------------------------


class DatasetError(RegistryError):
    """A rule of datasets; `status` is the HTTP status it answers with."""

    status = 400


class InvalidDatasetRow(DatasetError):
    """A row of an uploaded file cannot be read; nothing of the upload is kept."""

    code = "invalid_dataset_row"
    status = 422

    def __init__(self, line: int, error: str) -> None:
        super().__init__(f"line {line}: {error}", {"line": line, "error": error})
        self.line = line
        self.error = error


class PayloadTooLarge(DatasetError):
    code = "payload_too_large"
    status = 413

    def __init__(self, limit_bytes: int, plan: str) -> None:
        super().__init__(
            f"the file is larger than {limit_bytes} bytes ({limit_bytes // MB} MB), the upload limit "
            f"of the {plan} plan",
            {"limit_bytes": limit_bytes, "plan": plan},
        )


class UnsupportedFormat(DatasetError):
    code = "unsupported_media_type"
    status = 415

    def __init__(self, content_type: str | None) -> None:
        super().__init__(
            f"cannot tell the file format from Content-Type {content_type!r}: send "
            "application/x-ndjson (or application/jsonl) for JSONL, text/csv for CSV, or ?format=jsonl|csv",
            {"content_type": content_type, "formats": list(FORMATS)},
        )


class UploadInterrupted(Exception):
    """The request body ended before the file did (the client disconnected or the connection broke)."""


class DatasetArchived(DatasetError):
    code = "dataset_archived"
    status = 409

    def __init__(self, dataset_id: str) -> None:
        super().__init__(
            f"dataset {dataset_id} is archived; set its status to active or inactive to upload a file",
            {"dataset_id": dataset_id},
        )


# --- state ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset(DeletedByStatus):
    id: str
    tenant_id: str
    name: str
    description: str | None
    status: str
    tags: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    version: int  # stream version this state reflects (the ETag)
    # the current file (all None / 0 before the first upload)
    format: str | None = None
    row_count: int = 0
    size_bytes: int = 0
    content_sha256: str | None = None
    schema: dict[str, Any] | None = None
    upload_id: str | None = None
    uploaded_at: datetime | None = None
    uploaded_by: str | None = None
    artifacts: list[str] = field(default_factory=list)

    @property
    def has_file(self) -> bool:
        return self.upload_id is not None


def evolve_dataset(
    state: Dataset | None, tenant_id: str, event: BaseModel, meta: EventMeta
) -> Dataset | None:
    """The dataset after `event`; None when the event does not concern an existing dataset.
    Every event of the stream moves `version` (the usage record of an upload included)."""
    if isinstance(event, DatasetCreated):
        if state is not None:
            return state
        return Dataset(id=event.dataset_id, **lifecycle.new_entity_fields(event, tenant_id, meta))
    if state is None:
        return None
    if isinstance(event, DatasetUpdated):
        return lifecycle.touched(state, meta, event.updated_by, **lifecycle.set_fields(event, DATASET_FIELDS))
    if isinstance(event, DatasetFileUploaded):
        return lifecycle.touched(
            state,
            meta,
            event.uploaded_by,
            format=event.format,
            row_count=event.row_count,
            size_bytes=event.size_bytes,
            content_sha256=event.content_sha256,
            schema=event.schema_.model_dump(mode="json"),
            upload_id=event.upload_id,
            uploaded_at=meta.occurred_at,
            uploaded_by=event.uploaded_by,
            artifacts=[artifact_path(tenant_id, state.id, n) for n in ARTIFACT_NAMES],
        )
    if isinstance(event, DatasetDeleted):
        return lifecycle.touched(state, meta, event.deleted_by, status=DELETED)
    if isinstance(event, UsageRecorded):
        return replace(state, version=meta.stream_version)
    return None


def fold(
    state: Dataset | None, tenant_id: str, recorded: Iterable[tuple[EventEnvelope, BaseModel]]
) -> Dataset | None:
    folded: Dataset | None = lifecycle.fold(evolve_dataset, state, tenant_id, recorded)
    return folded


def schema_document(dataset: Dataset) -> dict[str, Any] | None:
    """`schema.json` of the dataset's current file, or None before the first upload."""
    if dataset.schema is None:
        return None
    return {
        "dataset_id": dataset.id,
        "upload_id": dataset.upload_id,
        "format": dataset.format,
        "row_count": dataset.row_count,
        **dataset.schema,
    }


# --- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateDataset:
    tenant_id: str
    actor: str
    name: str
    description: str | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateDataset:
    """`changes` holds the fields to set (name, description, tags, metadata, status)."""

    tenant_id: str
    dataset_id: str
    actor: str
    changes: Mapping[str, Any]
    precondition: Precondition | None = None


@dataclass(frozen=True)
class DeleteDataset:
    tenant_id: str
    dataset_id: str
    actor: str
    request_id: str
    at: datetime  # when the storage is freed (the usage record's timestamp)
    precondition: Precondition | None = None


@dataclass(frozen=True)
class StoredFile:
    """A file fully stored under `upload_id` (bytes and examples), not yet the dataset's file."""

    upload_id: str
    format: str
    size_bytes: int
    content_sha256: str
    row_count: int
    schema: DatasetSchema


@dataclass(frozen=True)
class UploadDatasetFile:
    tenant_id: str
    dataset_id: str
    actor: str
    format: str
    request_id: str
    declared_size: int | None = None  # Content-Length, when the client sent one
    precondition: Precondition | None = None


# --- deciding events ------------------------------------------------------------------------------


def require_live(
    dataset: Dataset | None, dataset_id: str, precondition: Precondition | None = None
) -> Dataset:
    return lifecycle.require_live(dataset, "dataset", dataset_id, precondition)


def decide_create(dataset_id: str, cmd: CreateDataset) -> DatasetCreated:
    return DatasetCreated(dataset_id=dataset_id, **lifecycle.created_fields(cmd))


def decide_update(dataset: Dataset | None, cmd: UpdateDataset) -> DatasetUpdated | None:
    """None when nothing would change (the caller gets the current state back)."""
    live = require_live(dataset, cmd.dataset_id, cmd.precondition)
    changes = lifecycle.changed_fields(live, cmd.changes, DATASET_FIELDS)
    lifecycle.check_changes(changes, delete_refusal="use DeleteDataset to delete a dataset")
    return DatasetUpdated(dataset_id=live.id, updated_by=cmd.actor, **changes) if changes else None


def storage_usage(
    *,
    tenant_id: str,
    dataset_id: str,
    upload_id: str | None,
    actor: str,
    bytes_delta: int,
    action: UsageAction,
    request_id: str,
    at: datetime,
) -> UsageRecorded:
    """The `storage_mb` usage of a change of stored bytes (a signed delta, exact MB)."""
    dimensions: dict[str, str | int | None] = {
        "dataset_id": dataset_id,
        "bytes_delta": bytes_delta,
        "action": action,
    }
    if upload_id is not None:
        dimensions["upload_id"] = upload_id
    return UsageRecorded(
        tenant_id=tenant_id,
        user_id=actor,
        meter="storage_mb",
        quantity=megabytes(bytes_delta),
        provider="internal",
        request_id=request_id,
        timestamp=at,
        dimensions=dimensions,
    )


def check_uploadable(dataset: Dataset | None, cmd: UploadDatasetFile) -> Dataset:
    live = require_live(dataset, cmd.dataset_id, cmd.precondition)
    if live.status == "archived":
        raise DatasetArchived(live.id)
    return live


def decide_file_uploaded(
    dataset: Dataset | None, cmd: UploadDatasetFile, stored: StoredFile, at: datetime
) -> tuple[DatasetFileUploaded, UsageRecorded]:
    """The new file replaces the current one: its event and the storage it adds (or frees)."""
    live = check_uploadable(dataset, cmd)
    event = DatasetFileUploaded(
        dataset_id=live.id,
        upload_id=stored.upload_id,
        previous_upload_id=live.upload_id,
        format=stored.format,  # type: ignore[arg-type]
        size_bytes=stored.size_bytes,
        content_sha256=stored.content_sha256,
        row_count=stored.row_count,
        schema=stored.schema,
        uploaded_by=cmd.actor,
    )
    usage = storage_usage(
        tenant_id=cmd.tenant_id,
        dataset_id=live.id,
        upload_id=stored.upload_id,
        actor=cmd.actor,
        bytes_delta=stored.size_bytes - live.size_bytes,
        action="replace" if live.has_file else "upload",
        request_id=cmd.request_id,
        at=at,
    )
    return event, usage


def decide_delete(dataset: Dataset | None, cmd: DeleteDataset) -> list[BaseModel]:
    """The deletion, and the storage it frees when the dataset had a file."""
    live = require_live(dataset, cmd.dataset_id, cmd.precondition)
    events: list[BaseModel] = [
        DatasetDeleted(
            dataset_id=live.id, upload_id=live.upload_id, size_bytes=live.size_bytes, deleted_by=cmd.actor
        )
    ]
    if live.has_file:
        events.append(
            storage_usage(
                tenant_id=cmd.tenant_id,
                dataset_id=live.id,
                upload_id=live.upload_id,
                actor=cmd.actor,
                bytes_delta=-live.size_bytes,
                action="delete",
                request_id=cmd.request_id,
                at=cmd.at,
            )
        )
    return events
