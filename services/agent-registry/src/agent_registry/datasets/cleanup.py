"""Finding and deleting stored dataset files nothing refers to any more.

Each request deletes what it leaves behind (a failed upload, a replaced or deleted file), but a
crash or a lost connection to the database can interrupt that. A periodic sweep catches up:

- an upload whose in-progress marker stopped beating is either the dataset's file after all (its
  commit went through: only the marker goes) or garbage (deleted);
- a completed file that is not its dataset's current file is deleted.

"Current" is decided from the event store (the last `DatasetFileUploaded`/`DatasetDeleted` of the
dataset's stream), never from a read model that may be lagging or being rebuilt. Both kinds are
looked at only once they are older than `STALE_AFTER`, which leaves running uploads alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ailab_contracts import EventRegistry
from ailab_contracts.events.datasets import DatasetDeleted, DatasetFileUploaded
from ailab_runtime.eventstore import EventStore

from .model import dataset_stream
from .storage import DatasetFileStore

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=15)  # > HEARTBEAT_S of a running upload, with a wide margin
SWEEP_INTERVAL_S = 600.0
FIRST_SWEEP_AFTER_S = 60.0


class CurrentUploads(Protocol):
    async def current_upload(self, tenant_id: str, dataset_id: str) -> str | None: ...


class EventStoreUploads:
    """The current upload of a dataset according to its event stream (None if it has no file or
    was deleted)."""

    def __init__(self, store: EventStore, registry: EventRegistry) -> None:
        self._store = store
        self._registry = registry

    async def current_upload(self, tenant_id: str, dataset_id: str) -> str | None:
        current: str | None = None
        for raw in await self._store.read_stream(dataset_stream(tenant_id, dataset_id)):
            if raw.event_type not in ("registry.DatasetFileUploaded", "registry.DatasetDeleted"):
                continue
            _, event = self._registry.parse(raw.to_wire())
            if isinstance(event, DatasetFileUploaded):
                current = event.upload_id
            elif isinstance(event, DatasetDeleted):
                current = None
        return current


async def sweep(
    files: DatasetFileStore, uploads: CurrentUploads, now: datetime, stale_after: timedelta = STALE_AFTER
) -> int:
    """Delete every orphaned upload older than `stale_after`; returns how many were deleted."""
    cutoff = now - stale_after
    discarded = 0
    for marker in await files.stale_uploads(cutoff):
        tenant_id, dataset_id, upload_id = marker["tenant_id"], marker["dataset_id"], marker["_id"]
        if await uploads.current_upload(tenant_id, dataset_id) == upload_id:
            await files.settled(upload_id)
        else:
            await files.discard(tenant_id, dataset_id, upload_id)
            discarded += 1
    for doc in await files.files_before(cutoff):
        meta = doc.get("metadata") or {}
        tenant_id, dataset_id, upload_id = meta.get("tenant_id"), meta.get("dataset_id"), doc["_id"]
        if not isinstance(tenant_id, str) or not isinstance(dataset_id, str):
            continue
        if await uploads.current_upload(tenant_id, dataset_id) != upload_id:
            await files.discard(tenant_id, dataset_id, upload_id)
            discarded += 1
    if discarded:
        log.info("discarded orphaned dataset uploads", extra={"fields": {"count": discarded}})
    return discarded


class Sweeper:
    """Runs `sweep` every `interval_s` in the serving process."""

    def __init__(self, files: DatasetFileStore, uploads: CurrentUploads) -> None:
        self._files = files
        self._uploads = uploads
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, first_after_s: float = FIRST_SWEEP_AFTER_S, interval_s: float = SWEEP_INTERVAL_S) -> None:
        self._task = asyncio.create_task(self._run(first_after_s, interval_s), name="dataset-sweeper")

    async def _run(self, first_after_s: float, interval_s: float) -> None:
        delay = first_after_s
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                return
            except TimeoutError:
                pass
            try:
                await sweep(self._files, self._uploads, datetime.now(UTC))
            except Exception:  # noqa: BLE001 - try again next time
                log.exception("dataset sweep failed")
            delay = interval_s

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
