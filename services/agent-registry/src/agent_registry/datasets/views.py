"""Read models of datasets, built from the dataset streams and rebuilt by `rebuild-projections`:

- `datasets`: one document per dataset (`_id` = dataset id, `tenant_id`, `status` -- `deleted` ones
  are kept but never served --, the current file's `upload_id`, `format`, `row_count`, `size_bytes`,
  `content_sha256`, `schema`, `uploaded_at`, ..., and `_version`, the stream version it reflects).
- `dataset_artifacts`: `schema.json` of each dataset's current file, keyed by its artifact path
  `tenants/{tenant}/datasets/{id}/schema.json` (removed with the dataset).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import EventEnvelope
from ailab_contracts.events.datasets import (
    DatasetCreated,
    DatasetDeleted,
    DatasetFileUploaded,
    DatasetUpdated,
)
from ailab_contracts.events.usage import UsageRecorded
from ailab_runtime.mongo_server import delete_matching
from ailab_runtime.pagination import keyset_page
from ailab_runtime.views import apply_versioned

from ..adapters.documents import entity_to_doc, utc
from ..adapters.mongo_lists import STATUS_AND_TAGS, ensure_list_indexes, live_entities_query
from ..application.ports import ListFilter
from ..domain.model import EventMeta
from ..projections.guarded import GuardedStateView
from .model import SCHEMA_FILE, Dataset, artifact_path, dataset_id_of_stream, evolve_dataset

DATASETS = "datasets"
ARTIFACTS = "dataset_artifacts"
VIEWS = (DATASETS, ARTIFACTS)

Db = AsyncDatabase[dict[str, Any]]
_DATASET_EVENTS = (DatasetCreated, DatasetUpdated, DatasetFileUploaded, DatasetDeleted)


def dataset_to_doc(dataset: Dataset) -> dict[str, Any]:
    return entity_to_doc(dataset)


def dataset_from_doc(doc: dict[str, Any]) -> Dataset:
    known = {"id": doc["_id"], "version": doc["_version"]}
    values = {f.name: utc(doc.get(f.name)) for f in fields(Dataset) if f.name not in known and f.name in doc}
    return Dataset(**values, **known)


def _dataset_key(event: BaseModel) -> str | None:
    if isinstance(event, _DATASET_EVENTS):
        return event.dataset_id
    if isinstance(event, UsageRecorded):  # recorded with an upload or a delete: moves the version
        dataset_id = event.dimensions.get("dataset_id")
        return dataset_id if isinstance(dataset_id, str) else None
    return None


class DatasetsProjection(GuardedStateView):
    """`datasets`: the fold of each dataset stream (events of other streams are ignored)."""

    def __init__(self, db: Db) -> None:
        super().__init__(db, DATASETS, _dataset_key, evolve_dataset, dataset_to_doc, dataset_from_doc)

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if dataset_id_of_stream(envelope.stream_id) is None:
            return
        await super().apply(envelope, event)


class DatasetArtifactsProjection:
    """`dataset_artifacts`: `schema.json` of the current file (replaced by each upload)."""

    name = ARTIFACTS

    def __init__(self, db: Db) -> None:
        self._col = db[ARTIFACTS]

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if dataset_id_of_stream(envelope.stream_id) is None:
            return
        tenant_id, meta = envelope.tenant_id, EventMeta.of(envelope)
        if isinstance(event, DatasetFileUploaded):
            path = artifact_path(tenant_id, event.dataset_id, SCHEMA_FILE)
            content = {
                "dataset_id": event.dataset_id,
                "upload_id": event.upload_id,
                "format": event.format,
                "row_count": event.row_count,
                **event.schema_.model_dump(mode="json"),
            }
            await apply_versioned(
                self._col,
                path,
                meta.stream_version,
                {
                    "tenant_id": tenant_id,
                    "dataset_id": event.dataset_id,
                    "name": SCHEMA_FILE,
                    "media_type": "application/json",
                    "upload_id": event.upload_id,
                    "content": content,
                    "created_at": meta.occurred_at,
                },
            )
        elif isinstance(event, DatasetDeleted):
            path = artifact_path(tenant_id, event.dataset_id, SCHEMA_FILE)
            await self._col.delete_one({"_id": path, "_version": {"$lt": meta.stream_version}})

    async def reset(self) -> None:
        await delete_matching(self._col, {})


def projections(db: Db) -> list[Any]:
    return [DatasetsProjection(db), DatasetArtifactsProjection(db)]


async def ensure_view_indexes(db: Db) -> None:
    await ensure_list_indexes(db[DATASETS], STATUS_AND_TAGS)
    await db[ARTIFACTS].create_index([("tenant_id", ASCENDING), ("_id", ASCENDING)], name="tenant_id")


class DatasetViews:
    """Reads of the dataset views; every query is scoped by tenant. Single reads return deleted
    datasets too (the use case decides what a caller sees); lists never do."""

    def __init__(self, db: Db) -> None:
        self._datasets = db[DATASETS]
        self._artifacts = db[ARTIFACTS]

    async def dataset(self, tenant_id: str, dataset_id: str) -> Dataset | None:
        doc = await self._datasets.find_one({"tenant_id": tenant_id, "_id": dataset_id})
        return dataset_from_doc(doc) if doc else None

    async def datasets(self, tenant_id: str, flt: ListFilter) -> tuple[list[Dataset], str | None]:
        query = live_entities_query(tenant_id, flt.status, flt.tag)
        docs, cursor = await keyset_page(self._datasets, query, flt.cursor, flt.limit)
        return [dataset_from_doc(d) for d in docs], cursor

    async def artifact(self, tenant_id: str, path: str) -> Any | None:
        doc = await self._artifacts.find_one({"tenant_id": tenant_id, "_id": path})
        return doc["content"] if doc else None
