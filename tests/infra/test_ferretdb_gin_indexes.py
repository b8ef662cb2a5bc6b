"""The local stack's FerretDB finds documents by `_id` and by an indexed field through an index, not
by reading the whole table (scripts/infra/ferretdb_gin_indexes.sql): FerretDB 1.24 filters with
`_jsonb -> 'field' @> value`, which its own btree indexes cannot serve, so up.sh has PostgreSQL add
a GIN index on that expression beside each of them. Checked with FerretDB's `explain`, which shows
PostgreSQL's plan. MongoDB uses its own indexes, and FerretDB's SQLite handler shows no PostgreSQL
plan: skipped there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from ailab_runtime.mongo_server import is_ferretdb_build
from tests.support.infra import Infra

pytestmark = pytest.mark.integration


def _index_names(plan: dict[str, Any]) -> Iterator[str]:
    if "Index Name" in plan:
        yield str(plan["Index Name"])
    for child in plan.get("Plans", ()):
        yield from _index_names(child)


def _gin_indexes_used(db: Database[dict[str, Any]], collection: str, query: dict[str, Any]) -> list[str]:
    explained = db.command("explain", {"find": collection, "filter": query}, verbosity="queryPlanner")
    plan = explained.get("queryPlanner", {}).get("Plan")
    if plan is None:
        pytest.skip("FerretDB's SQLite handler: no PostgreSQL plan")
    assert explained["filterPushdown"] is True
    return [name for name in _index_names(plan) if name.endswith("_gin")]


@pytest.fixture
def ferretdb(infra: Infra) -> Iterator[Database[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
    if not is_ferretdb_build(client.admin.command("buildInfo")):
        client.close()
        pytest.skip("not FerretDB: MongoDB uses its own indexes")
    db = client[infra.unique("test_gin_indexes_")]
    try:
        yield db
    finally:
        client.drop_database(db.name)
        client.close()


def test_lookups_by_id_and_by_an_indexed_field_use_a_gin_index(ferretdb: Database[dict[str, Any]]) -> None:
    docs = ferretdb["docs"]
    docs.create_index([("tenant_id", 1), ("kind", 1)])
    docs.insert_many(
        [
            {"_id": f"doc-{i}", "tenant_id": f"t-{i % 500}", "kind": "d", "v": 1, "pad": "x" * 200}
            for i in range(5000)
        ]
    )
    assert _gin_indexes_used(ferretdb, "docs", {"_id": "doc-7", "v": 1})
    assert _gin_indexes_used(ferretdb, "docs", {"tenant_id": "t-7", "kind": "d"})
    assert not _gin_indexes_used(ferretdb, "docs", {"pad": "x"})  # no index of FerretDB's on it
    # An index changes how rows are found, never which: a version-guarded replace, finds, a count.
    assert (
        docs.replace_one({"_id": "doc-7", "v": 1}, {"tenant_id": "t-7", "kind": "d", "v": 2}).matched_count
        == 1
    )
    assert (
        docs.replace_one({"_id": "doc-7", "v": 1}, {"tenant_id": "t-7", "kind": "d", "v": 3}).matched_count
        == 0
    )
    assert docs.find_one({"_id": "doc-7"}) == {"_id": "doc-7", "tenant_id": "t-7", "kind": "d", "v": 2}
    assert sorted(d["_id"] for d in docs.find({"tenant_id": "t-7", "kind": "d"})) == sorted(
        f"doc-{i}" for i in range(7, 5000, 500)
    )
    assert docs.count_documents({"v": 1}) == 4999
