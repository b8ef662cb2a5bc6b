"""Write-behind batches for insert-only collections (run logs and spans).

Runs report many small log lines and spans; one insert each would make them most of a run's
database writes. Documents are collected from every run in this process and written together with
one unordered `insert_many` shortly after (`delay_s`), or at once when `max_batch` are waiting.
`flush()` returns only when everything added before it is stored, so the executor flushes before it
records a run's end: once a run is visible as finished, its logs and spans are readable.
Ids are deterministic, so a duplicate (a retried write) is skipped, never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000


class WriteBehind:
    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], delay_s: float = 0.1, max_batch: int = 500
    ) -> None:
        self._col = collection
        self._delay = delay_s
        self._max = max_batch
        self._pending: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()  # one write at a time: a flush waits for the one in flight
        self._timer: asyncio.Task[None] | None = None

    async def add(self, doc: dict[str, Any]) -> None:
        self._pending.append(doc)
        if len(self._pending) >= self._max:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._delay)
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - kept pending; the next flush writes them
            log.exception("write-behind flush failed", extra={"fields": {"collection": self._col.name}})

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self._col.insert_many(batch, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    failed = {e["index"] for e in errors if e.get("code") != DUPLICATE_KEY}
                    self._pending = [batch[i] for i in sorted(failed)] + self._pending
                    raise
            except BaseException:
                self._pending = batch + self._pending
                raise

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._timer
        await self.flush()
