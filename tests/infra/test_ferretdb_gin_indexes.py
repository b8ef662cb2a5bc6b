"""The local stack's FerretDB finds documents by `_id` and by an indexed field through an index, not
by reading the whole table (scripts/infra/ferretdb_gin_indexes.sql): FerretDB 1.24 filters with
`_jsonb -> 'field' @> value`, which its own btree indexes cannot serve, so up.sh has PostgreSQL add
a GIN index on that expression beside each of them (not on the usage ledger, only inserted into).
Checked with FerretDB's `explain`, which shows PostgreSQL's plan. MongoDB uses its own indexes, and
FerretDB's SQLite handler shows no PostgreSQL plan: skipped there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.mongo_server import is_ferretdb

pytestmark = pytest.mark.integration


def _index_names(plan: dict[str, Any]) -> Iterator[str]:
    if "Index Name" in plan:
        yield str(plan["Index Name"])
    for child in plan.get("Plans", ()):
        yield from _index_names(child)


async def _gin_indexes_used(
    db: AsyncDatabase[dict[str, Any]], collection: str, query: dict[str, Any]
) -> list[str]:
    explained = await db.command("explain", {"find": collection, "filter": query}, verbosity="queryPlanner")
    plan = explained.get("queryPlanner", {}).get("Plan")
    if plan is None:
        pytest.skip("FerretDB's SQLite handler: no PostgreSQL plan")
    assert explained["filterPushdown"] is True
    return [name for name in _index_names(plan) if name.endswith("_gin")]


async def test_lookups_by_id_and_by_an_indexed_field_use_a_gin_index(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    if not await is_ferretdb(mongo_db):
        pytest.skip("not FerretDB: MongoDB uses its own indexes")
    docs = mongo_db["docs"]
    await docs.create_index([("tenant_id", 1), ("kind", 1)])
    await docs.insert_many(
        [
            {"_id": f"doc-{i}", "tenant_id": f"t-{i % 500}", "kind": "d", "v": 1, "pad": "x" * 200}
            for i in range(5000)
        ]
    )
    assert await _gin_indexes_used(mongo_db, "docs", {"_id": "doc-7", "v": 1})
    assert await _gin_indexes_used(mongo_db, "docs", {"tenant_id": "t-7", "kind": "d"})
    assert not await _gin_indexes_used(mongo_db, "docs", {"pad": "x"})  # no index of FerretDB's on it
    # An index changes how rows are found, never which: a version-guarded replace, finds, a count.
    replaced = await docs.replace_one({"_id": "doc-7", "v": 1}, {"tenant_id": "t-7", "kind": "d", "v": 2})
    assert replaced.matched_count == 1
    stale = await docs.replace_one({"_id": "doc-7", "v": 1}, {"tenant_id": "t-7", "kind": "d", "v": 3})
    assert stale.matched_count == 0
    assert await docs.find_one({"_id": "doc-7"}) == {"_id": "doc-7", "tenant_id": "t-7", "kind": "d", "v": 2}
    found = [d["_id"] async for d in docs.find({"tenant_id": "t-7", "kind": "d"})]
    assert sorted(found) == sorted(f"doc-{i}" for i in range(7, 5000, 500))
    assert await docs.count_documents({"v": 1}) == 4999


async def test_the_usage_ledger_gets_no_gin_index(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    """Listed in `ailab_ferretdb_gin_skipped`: one insert per usage event, never looked up by `_id`
    on FerretDB, so a GIN index there would only cost. A collection whose name merely starts the
    same still gets one."""
    if not await is_ferretdb(mongo_db):
        pytest.skip("not FerretDB: MongoDB uses its own indexes")
    for name in ("usage_ledger", "usage_ledger_records"):
        await mongo_db[name].insert_many([{"_id": f"e-{i}", "s": f"2026-11-28|0|{i}"} for i in range(2000)])
    assert await _gin_indexes_used(mongo_db, "usage_ledger", {"_id": "e-7"}) == []
    assert await _gin_indexes_used(mongo_db, "usage_ledger_records", {"_id": "e-7"})
    assert await mongo_db["usage_ledger"].find_one({"_id": "e-7"}) == {"_id": "e-7", "s": "2026-11-28|0|7"}
