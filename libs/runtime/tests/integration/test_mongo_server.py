from __future__ import annotations

from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.mongo_server import delete_matching, is_ferretdb

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("ferretdb_rounds", [True, False])
async def test_delete_matching_in_rounds_deletes_every_match_and_nothing_else(
    db: AsyncDatabase[dict[str, Any]], ferretdb_rounds: bool
) -> None:
    """Rounds of 7 over 40 matches whose keys are shared by up to 3 documents: every match goes,
    the other documents stay. Both ways (rounds, one command) run on whichever server this is."""
    col = db["delete_rounds"]
    await col.insert_many(
        [{"_id": f"d{n:03d}", "s": f"2026-01-{n // 3:02d}", "old": n < 40} for n in range(60)]
    )
    deleted = await delete_matching(col, {"old": True}, order_key="s", round_size=7, ferretdb=ferretdb_rounds)
    assert deleted == 40
    assert sorted([d["_id"] async for d in col.find({})]) == [f"d{n:03d}" for n in range(40, 60)]
    assert await delete_matching(col, {"old": True}, order_key="s", round_size=7) == 0


@pytest.mark.parametrize("ferretdb_rounds", [True, False])
async def test_delete_matching_everything_in_rounds(
    db: AsyncDatabase[dict[str, Any]], ferretdb_rounds: bool
) -> None:
    """A projection reset's `{}`, by `_id`, in rounds of 7 over 30 documents."""
    col = db["delete_all_rounds"]
    await col.insert_many([{"_id": f"p{n:02d}"} for n in range(30)])
    assert await delete_matching(col, {}, round_size=7, ferretdb=ferretdb_rounds) == 30
    assert await col.count_documents({}) == 0


async def test_delete_matching_refuses_rounds_it_could_not_bound(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Matches without the key would never fall under a round's bound: an error, not a loop."""
    col = db["delete_without_key"]
    await col.insert_many([{"_id": n} for n in range(10)])
    with pytest.raises(ValueError, match="no 's'"):
        await delete_matching(col, {}, order_key="s", round_size=3, ferretdb=True)
    with pytest.raises(ValueError, match="65,535"):
        await delete_matching(col, {}, round_size=70_000)


async def test_delete_matching_deletes_more_than_one_ferretdb_statement_can(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """70,000 matches: FerretDB 1.24 refuses a plain delete_many of them (65,535 parameters at most
    in its one DELETE statement); delete_matching deletes them all on either server."""
    col = db["delete_many_limit"]
    docs = [{"_id": f"e{n:06d}", "s": f"2026-01-01|0|{n // 1000}"} for n in range(70_000)]
    for start in range(0, len(docs), 10_000):
        await col.insert_many(docs[start : start + 10_000])
    await col.insert_one({"_id": "keep", "s": "2026-02-01|0|0"})
    if await is_ferretdb(db):
        with pytest.raises(Exception, match="65535"):
            await col.delete_many({"s": {"$lt": "2026-01-02"}})
        assert await col.count_documents({}) == 70_001  # the refused delete deleted nothing
    assert await delete_matching(col, {"s": {"$lt": "2026-01-02"}}, order_key="s") == 70_000
    assert [d["_id"] async for d in col.find({})] == ["keep"]
