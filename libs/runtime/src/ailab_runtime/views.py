"""Helpers for version-guarded read-model documents (projection style idempotency)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError


async def apply_versioned(
    collection: AsyncCollection[dict[str, Any]],
    doc_id: str,
    version: int,
    fields: dict[str, Any],
    on_insert: dict[str, Any] | None = None,
) -> bool:
    """Set `fields` on the view document unless it already reflects `version` or later.

    Returns True when the document changed. Re-applying an event (redelivery, catch-up after a
    crash, rebuild) is a no-op, so projections can be applied at least once.
    """
    update: dict[str, Any] = {"$set": {**fields, "_version": version}}
    if on_insert:
        update["$setOnInsert"] = on_insert
    try:
        result = await collection.update_one(
            {"_id": doc_id, "_version": {"$lt": version}}, update, upsert=True
        )
    except DuplicateKeyError:
        return False  # the document exists at `version` or later
    return result.modified_count > 0 or result.upserted_id is not None
