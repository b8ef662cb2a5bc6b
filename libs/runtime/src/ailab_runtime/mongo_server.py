"""Which MongoDB-wire server a service talks to, and the few operations that must differ by it.
Production runs MongoDB 7+; the local stack without Docker runs FerretDB 1.24, whose query planning
differs enough that a few adapters pick their queries by it (e.g. the usage ledger's owner reads)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

# FerretDB 1.24 deletes what a delete command matched with one SQL statement that has a parameter
# per document, and PostgreSQL takes at most 65,535 parameters: a delete matching more fails whole
# ("extended protocol limited to 65535 parameters") and deletes nothing.
FERRETDB_DELETE_ROUND = 50_000


async def is_ferretdb(db: AsyncDatabase[Any]) -> bool:
    """Whether the server is FerretDB (its `buildInfo` answer adds `ferretdbVersion`)."""
    return "ferretdbVersion" in await db.client.admin.command("buildInfo")


async def delete_matching(
    col: AsyncCollection[Any],
    query: dict[str, Any],
    *,
    order_key: str = "_id",
    round_size: int = FERRETDB_DELETE_ROUND,
    ferretdb: bool | None = None,
) -> int:
    """`delete_many(query)`, however many documents match; returns how many were deleted.

    On MongoDB that is one command. On FerretDB it goes in rounds: each finds the `round_size`-th
    smallest `order_key` among the matches and deletes the matches up to it, so a round deletes
    about `round_size` documents, more when others share that key (hence `_id` by default). Every
    match must have the field, all of one type (a round deletes only matches of its bound's type),
    as `_id`s usually are. FerretDB hands neither the range nor the sort to PostgreSQL, so each
    round reads the whole collection twice and sorts the matches left: slow on a large collection,
    but it finishes (a round that deletes nothing raises rather than loop). `ferretdb` skips asking
    the server."""
    if not 0 < round_size <= 65_535:
        raise ValueError(f"round_size {round_size}: FerretDB deletes at most 65,535 documents a command")
    if ferretdb is None:
        ferretdb = await is_ferretdb(col.database)
    if not ferretdb:
        return int((await col.delete_many(query)).deleted_count)
    deleted = 0
    while True:
        cursor = col.find(query, {order_key: 1}).sort(order_key, 1).skip(round_size - 1).limit(1)
        bound = [doc async for doc in cursor]
        if not bound:  # fewer than round_size left
            return deleted + int((await col.delete_many(query)).deleted_count)
        if order_key not in bound[0]:
            raise ValueError(f"delete_matching: a match has no {order_key!r} to delete it in rounds by")
        this_round = {"$and": [query, {order_key: {"$lte": bound[0][order_key]}}]}
        count = int((await col.delete_many(this_round)).deleted_count)
        if count == 0:
            raise RuntimeError(f"delete_matching: a round by {order_key!r} deleted nothing (mixed types?)")
        deleted += count
