"""Idempotency-Key support for POST: the first request's response is stored and replayed.

A key is scoped to (tenant, caller, route). Reusing it with a different body is refused (422);
a second request while the first is still running gets 409. Failed requests free the key, and a
key left `running` by a crashed process is freed once its lease (60 s) has passed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .errors import ApiError

StoredResponse = tuple[int, Any, dict[str, str]]


def body_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], lease_s: float = 60.0) -> None:
        self._col = db["idempotency_keys"]
        self._lease = timedelta(seconds=lease_s)

    async def _take_over_abandoned(self, doc_id: str, existing: dict[str, Any]) -> bool:
        """A `running` key older than the lease belongs to a process that died: free it."""
        created = existing.get("created_at")
        if created is None or datetime.now(UTC) - created < self._lease:
            return False
        result = await self._col.delete_one({"_id": doc_id, "state": "running", "created_at": created})
        return result.deleted_count == 1

    async def run(
        self,
        scope: str,
        key: str | None,
        request_body: Any,
        action: Callable[[], Awaitable[StoredResponse]],
    ) -> tuple[StoredResponse, bool]:
        """Run `action` once per key; returns (response, replayed)."""
        if not key:
            return await action(), False
        if len(key) > 255:
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters")
        doc_id = f"{scope}|{key}"
        digest = body_hash(request_body)
        try:
            await self._col.insert_one(
                {"_id": doc_id, "hash": digest, "state": "running", "created_at": datetime.now(UTC)}
            )
        except DuplicateKeyError:
            existing = await self._col.find_one({"_id": doc_id})
            if existing is None:
                raise ApiError(409, "idempotency_key_in_use", "retry: the key was just released") from None
            if existing["hash"] != digest:
                raise ApiError(
                    422, "idempotency_key_reused", "Idempotency-Key was used with a different request body"
                ) from None
            if existing["state"] != "done":
                raise ApiError(
                    409, "idempotency_key_in_use", "a request with this key is in progress"
                ) from None
            return (existing["status"], existing["body"], existing.get("headers") or {}), True
        try:
            status, body, headers = await action()
        except BaseException:
            await self._col.delete_one({"_id": doc_id})
            raise
        await self._col.update_one(
            {"_id": doc_id}, {"$set": {"state": "done", "status": status, "body": body, "headers": headers}}
        )
        return (status, body, headers), False
