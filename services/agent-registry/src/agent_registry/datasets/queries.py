"""What a caller may read of datasets. Deleted datasets are not found; the file, its examples and its
schema are always those of the dataset's current upload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ailab_runtime.errors import ApiError
from ailab_runtime.pagination import decode_cursor, encode_cursor

from ..application.ports import ListFilter
from ..domain.errors import NotFound
from .model import ARTIFACT_NAMES, Dataset, artifact_path, require_live
from .ports import DatasetPorts

Example = tuple[int, str, Any]  # (index, upload_id, data)


async def get_dataset(ports: DatasetPorts, tenant_id: str, dataset_id: str) -> Dataset:
    return require_live(await ports.views.dataset(tenant_id, dataset_id), dataset_id)


async def list_datasets(
    ports: DatasetPorts, tenant_id: str, flt: ListFilter
) -> tuple[list[Dataset], str | None]:
    return await ports.views.datasets(tenant_id, flt)


async def _with_file(ports: DatasetPorts, tenant_id: str, dataset_id: str) -> tuple[Dataset, str]:
    dataset = await get_dataset(ports, tenant_id, dataset_id)
    if dataset.upload_id is None:
        raise NotFound("dataset file", dataset_id)
    return dataset, dataset.upload_id


async def open_file(
    ports: DatasetPorts, tenant_id: str, dataset_id: str
) -> tuple[Dataset, AsyncIterator[bytes]]:
    dataset, upload_id = await _with_file(ports, tenant_id, dataset_id)
    chunks = await ports.files.open_file(tenant_id, upload_id)
    if chunks is None:  # replaced between the two reads: the caller may retry
        raise NotFound("dataset file", dataset_id)
    return dataset, chunks


def _cursor(upload_id: str, last_index: int) -> str:
    return encode_cursor(f"{upload_id}:{last_index}")


def _after(cursor: str | None, upload_id: str) -> int:
    """Index of the last example of the previous page (-1 without a cursor)."""
    value = decode_cursor(cursor)
    if value is None:
        return -1
    cursor_upload, _, index = value.rpartition(":")
    if not index.isdigit() or not cursor_upload:
        raise ApiError(400, "invalid_cursor", "cursor is not valid", {"cursor": cursor})
    if cursor_upload != upload_id:
        raise ApiError(
            409,
            "dataset_file_replaced",
            "the dataset's file was replaced since this cursor was issued; list from the start again",
            {"cursor": cursor},
        )
    return int(index)


async def list_examples(
    ports: DatasetPorts, tenant_id: str, dataset_id: str, cursor: str | None, limit: int
) -> tuple[list[Example], str | None]:
    """Rows of the current file in file order, `limit` at a time."""
    dataset = await get_dataset(ports, tenant_id, dataset_id)
    if dataset.upload_id is None:
        if cursor:
            _after(cursor, "")  # a cursor cannot belong to a dataset without a file
        return [], None
    start = _after(cursor, dataset.upload_id) + 1
    stop = min(start + limit, dataset.row_count)
    docs = await ports.files.examples_range(tenant_id, dataset_id, dataset.upload_id, start, stop)
    items = [(int(d["index"]), dataset.upload_id, d["data"]) for d in docs]
    next_cursor = _cursor(dataset.upload_id, stop - 1) if stop < dataset.row_count and items else None
    return items, next_cursor


async def get_example(ports: DatasetPorts, tenant_id: str, dataset_id: str, index: int) -> Example:
    dataset, upload_id = await _with_file(ports, tenant_id, dataset_id)
    if index >= dataset.row_count:
        raise NotFound("example", f"{dataset_id}:{index}")
    doc = await ports.files.example(tenant_id, dataset_id, upload_id, index)
    if doc is None:
        raise NotFound("example", f"{dataset_id}:{index}")
    return index, upload_id, doc["data"]


async def get_file(ports: DatasetPorts, tenant_id: str, dataset_id: str, name: str) -> Any:
    """A stored JSON file of the dataset (`schema.json`)."""
    if name not in ARTIFACT_NAMES:
        raise NotFound("file", name)
    await _with_file(ports, tenant_id, dataset_id)
    path = artifact_path(tenant_id, dataset_id, name)
    content = await ports.views.artifact(tenant_id, path)
    if content is None:
        raise NotFound("file", path)
    return content
