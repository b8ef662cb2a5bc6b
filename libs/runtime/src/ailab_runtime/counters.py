"""Exact counting on a MongoDB-wire backend that may lose concurrent updates (FerretDB 1.24).

Two ways, both proven under many concurrent writers in tests/integration:
- `KeyedSerializer`: every update of one document goes through one writer at a time in this
  process (consumers already get this per Kafka partition; this covers in-process fan-out).
- `LedgerCounter`: increments are inserted as entries with their own id (a duplicate id is an
  increment already counted) and totals are `$group`/`$sum` over the entries: insert-only, so it
  is exact and idempotent on any backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


class KeyedSerializer:
    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield


class LedgerCounter:
    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._col = collection

    async def ensure_indexes(self) -> None:
        await self._col.create_index("key")

    async def add(self, key: str, amount: int, entry_id: str) -> bool:
        """Count `amount` under `key` once per `entry_id`; returns False for a repeat."""
        try:
            await self._col.insert_one({"_id": entry_id, "key": key, "amount": amount})
            return True
        except DuplicateKeyError:
            return False

    async def total(self, key: str) -> int:
        rows = [
            r
            async for r in await self._col.aggregate(
                [{"$match": {"key": key}}, {"$group": {"_id": "$key", "total": {"$sum": "$amount"}}}]
            )
        ]
        return int(rows[0]["total"]) if rows else 0
