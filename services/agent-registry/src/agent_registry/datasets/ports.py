"""Ports the dataset use cases depend on; `wiring.py` plugs in the MongoDB adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ailab_runtime.ids import new_id

from ..application.ports import EventRecorder, ListFilter
from .model import Dataset


class DatasetViewsPort(Protocol):
    async def dataset(self, tenant_id: str, dataset_id: str) -> Dataset | None: ...

    async def datasets(self, tenant_id: str, flt: ListFilter) -> tuple[list[Dataset], str | None]: ...

    async def artifact(self, tenant_id: str, path: str) -> Any | None: ...


class UploadSinkPort(Protocol):
    """One upload being stored (bytes and rows), not visible to readers."""

    async def write(self, chunk: bytes) -> None: ...

    async def add_rows(self, rows: list[tuple[int, dict[str, Any]]], size_bytes: int) -> None:
        """Rows in file order, each with its line number (for errors the store reports)."""
        ...

    async def finish(self) -> None: ...

    async def discard(self) -> None: ...


class FileStorePort(Protocol):
    async def begin(
        self, *, tenant_id: str, dataset_id: str, upload_id: str, filename: str, fmt: str, at: datetime
    ) -> UploadSinkPort: ...

    async def settled(self, upload_id: str) -> None: ...

    async def discard(self, tenant_id: str, dataset_id: str, upload_id: str) -> None: ...

    async def open_file(self, tenant_id: str, upload_id: str) -> AsyncIterator[bytes] | None: ...

    async def examples_range(
        self, tenant_id: str, dataset_id: str, upload_id: str, start: int, stop: int
    ) -> list[dict[str, Any]]: ...

    async def example(
        self, tenant_id: str, dataset_id: str, upload_id: str, index: int
    ) -> dict[str, Any] | None: ...


class TenantPlansPort(Protocol):
    async def plan(self, tenant_id: str) -> str | None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DatasetPorts:
    views: DatasetViewsPort
    recorder: EventRecorder
    files: FileStorePort
    plans: TenantPlansPort
    new_id: Callable[[str], str] = new_id
    clock: Callable[[], datetime] = field(default=_utc_now)
