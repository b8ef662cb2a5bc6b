"""Lists over an entity view collection, as every feature area pages them: the query of a tenant's
live entities and the indexes that serve its filters (tenant first, `_id` last: the page order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from ..domain.lifecycle import DELETED


def live_entities_query(tenant_id: str, status: str | None, tag: str | None) -> dict[str, Any]:
    """The tenant's entities, deleted ones never (unless asked by status), carrying `tag` if given."""
    query: dict[str, Any] = {"tenant_id": tenant_id, "status": status or {"$ne": DELETED}}
    if tag:
        query["tags"] = tag
    return query


async def ensure_list_indexes(
    collection: AsyncCollection[dict[str, Any]], filters: Mapping[str, str]
) -> None:
    """The `tenant_id` index and one per list filter (index name -> field): names are kept as they
    are in existing databases, since an index re-created under another name is refused."""
    await collection.create_index([("tenant_id", ASCENDING), ("_id", ASCENDING)], name="tenant_id")
    for name, field in filters.items():
        await collection.create_index(
            [("tenant_id", ASCENDING), (field, ASCENDING), ("_id", ASCENDING)], name=name
        )


# the filters of every named entity's list (`?status=`, `?tag=`)
STATUS_AND_TAGS = {"tenant_status": "status", "tenant_tags": "tags"}
