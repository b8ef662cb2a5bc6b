"""MongoDB read models of prompts: the `prompts` and `prompt_versions` collections, their document
layout and indexes. Every query filters by `tenant_id` first."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.errors import ApiError
from ailab_runtime.pagination import decode_cursor, encode_cursor, keyset_page

from ..adapters.documents import entity_from_doc, entity_to_doc, state_from_doc
from ..adapters.mongo_lists import STATUS_AND_TAGS, ensure_list_indexes, live_entities_query
from ..application.ports import ListFilter
from .domain import Prompt, PromptVersion, version_doc_id

PROMPTS = "prompts"
PROMPT_VERSIONS = "prompt_versions"
VIEWS = (PROMPTS, PROMPT_VERSIONS)

Db = AsyncDatabase[dict[str, Any]]


def prompt_to_doc(prompt: Prompt) -> dict[str, Any]:
    return entity_to_doc(prompt)


def prompt_from_doc(doc: dict[str, Any]) -> Prompt:
    return entity_from_doc(Prompt, doc)


def prompt_version_to_doc(version: PromptVersion) -> dict[str, Any]:
    """`_id` `<prompt_id>:v<n>`; `version` is the number n, `_version` the stream version."""
    body = {k: v for k, v in asdict(version).items() if k not in ("number", "version")}
    return {"_id": version.id, **body, "version": version.number, "_version": version.version}


def prompt_version_from_doc(doc: dict[str, Any]) -> PromptVersion:
    version: PromptVersion = state_from_doc(
        PromptVersion, doc, number=doc["version"], version=doc["_version"]
    )
    return version


async def ensure_indexes(db: Db) -> None:
    await ensure_list_indexes(db[PROMPTS], STATUS_AND_TAGS)
    # also serves other features that look a version up by (tenant_id, prompt_id, version)
    await db[PROMPT_VERSIONS].create_index(
        [("tenant_id", ASCENDING), ("prompt_id", ASCENDING), ("version", ASCENDING)],
        name="tenant_prompt_version",
    )


def _decode_number(cursor: str | None) -> int:
    after = decode_cursor(cursor)
    if after is None:
        return 0
    if not after.isdigit():
        raise ApiError(400, "invalid_cursor", "cursor is not valid", {"cursor": cursor})
    return int(after)


class MongoPromptViews:
    """Implements `PromptViews` over the collections the projections maintain."""

    def __init__(self, db: Db) -> None:
        self._prompts = db[PROMPTS]
        self._versions = db[PROMPT_VERSIONS]

    async def prompt(self, tenant_id: str, prompt_id: str) -> Prompt | None:
        doc = await self._prompts.find_one({"tenant_id": tenant_id, "_id": prompt_id})
        return prompt_from_doc(doc) if doc else None

    async def prompts(self, tenant_id: str, flt: ListFilter) -> tuple[list[Prompt], str | None]:
        query = live_entities_query(tenant_id, flt.status, flt.tag)
        docs, cursor = await keyset_page(self._prompts, query, flt.cursor, flt.limit)
        return [prompt_from_doc(d) for d in docs], cursor

    async def prompt_version(self, tenant_id: str, prompt_id: str, number: int) -> PromptVersion | None:
        doc = await self._versions.find_one(
            {"tenant_id": tenant_id, "_id": version_doc_id(prompt_id, number)}
        )
        return prompt_version_from_doc(doc) if doc else None

    async def prompt_versions(
        self, tenant_id: str, prompt_id: str, limit: int, cursor: str | None
    ) -> tuple[list[PromptVersion], str | None]:
        # `_id` order is not number order (v10 < v2), so page on the integer `version`
        query: dict[str, Any] = {"tenant_id": tenant_id, "prompt_id": prompt_id}
        after = _decode_number(cursor)
        if after:
            query["version"] = {"$gt": after}
        docs = [d async for d in self._versions.find(query).sort("version", ASCENDING).limit(limit + 1)]
        next_cursor = encode_cursor(str(docs[limit - 1]["version"])) if len(docs) > limit else None
        return [prompt_version_from_doc(d) for d in docs[:limit]], next_cursor
