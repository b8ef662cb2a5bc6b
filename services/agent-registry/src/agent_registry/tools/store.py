"""MongoDB side of tools: the `tools` read model, the `tool_names` claims and their indexes.
Every query filters by `tenant_id` first."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_runtime.errors import ApiError
from ailab_runtime.pagination import keyset_page

from ..adapters.documents import entity_from_doc, entity_to_doc, utc
from ..adapters.mongo_lists import STATUS_AND_TAGS, ensure_list_indexes, live_entities_query
from .domain import Tool
from .ports import NameClaim, ToolFilter

TOOLS = "tools"
TOOL_NAMES = "tool_names"  # write side (uniqueness claims), not a projection
VIEWS = (TOOLS,)

Db = AsyncDatabase[dict[str, Any]]


def tool_to_doc(tool: Tool) -> dict[str, Any]:
    return entity_to_doc(tool)


def tool_from_doc(doc: dict[str, Any]) -> Tool:
    return entity_from_doc(Tool, doc)


async def ensure_indexes(db: Db) -> None:
    await ensure_list_indexes(db[TOOLS], {**STATUS_AND_TAGS, "tenant_kind": "kind"})
    await db[TOOL_NAMES].create_index([("tenant_id", ASCENDING)], name="tenant_id")


class MongoToolViews:
    def __init__(self, db: Db) -> None:
        self._tools = db[TOOLS]

    async def tool(self, tenant_id: str, tool_id: str) -> Tool | None:
        doc = await self._tools.find_one({"tenant_id": tenant_id, "_id": tool_id})
        return tool_from_doc(doc) if doc else None

    async def tools(self, tenant_id: str, flt: ToolFilter) -> tuple[list[Tool], str | None]:
        query = live_entities_query(tenant_id, flt.status, flt.tag)
        if flt.kind:
            query["kind"] = flt.kind
        docs, cursor = await keyset_page(self._tools, query, flt.cursor, flt.limit)
        return [tool_from_doc(d) for d in docs], cursor


def _claim_id(tenant_id: str, name_key: str) -> str:
    return f"{tenant_id}:{name_key}"


class MongoToolNameClaims:
    def __init__(self, db: Db) -> None:
        self._col = db[TOOL_NAMES]

    async def insert(self, tenant_id: str, claim: NameClaim) -> NameClaim | None:
        doc_id = _claim_id(tenant_id, claim.name_key)
        for _ in range(3):
            try:
                await self._col.insert_one({"_id": doc_id, "tenant_id": tenant_id, **asdict(claim)})
                return None
            except DuplicateKeyError:
                doc = await self._col.find_one({"_id": doc_id, "tenant_id": tenant_id})
            if doc is not None:
                return NameClaim(doc["name_key"], doc["tool_id"], doc["claim_id"], utc(doc["claimed_at"]))
            # released between our insert and read: try again
        raise ApiError(409, "conflict", "the tool name is being claimed by concurrent requests; retry")

    async def release(self, tenant_id: str, name_key: str, tool_id: str, claim_id: str | None = None) -> None:
        query: dict[str, Any] = {
            "_id": _claim_id(tenant_id, name_key),
            "tenant_id": tenant_id,
            "tool_id": tool_id,
        }
        if claim_id is not None:
            query["claim_id"] = claim_id
        await self._col.delete_one(query)
