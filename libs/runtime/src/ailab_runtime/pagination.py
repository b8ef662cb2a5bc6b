"""Opaque cursors for keyset pagination over time-ordered ids."""

from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from .errors import ApiError

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


def encode_cursor(last_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": last_key}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded))["k"]
        if not isinstance(value, str):
            raise ValueError
        return value
    except Exception as exc:
        raise ApiError(400, "invalid_cursor", "cursor is not valid", {"cursor": cursor}) from exc


async def keyset_page(
    collection: Any, query: dict[str, Any], cursor: str | None, limit: int, key: str = "_id"
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of documents sorted by `key` ascending, after the cursor."""
    after = decode_cursor(cursor)
    if after is not None:
        query = {**query, key: {"$gt": after}}
    docs = [d async for d in collection.find(query).sort(key, 1).limit(limit + 1)]
    next_cursor = encode_cursor(str(docs[limit - 1][key])) if len(docs) > limit else None
    return docs[:limit], next_cursor
