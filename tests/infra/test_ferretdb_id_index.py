"""The local stack's FerretDB finds a document by `_id` through an index, not by reading the whole
table (scripts/infra/ferretdb_id_index.sql): FerretDB 1.24 filters with `_jsonb -> '_id' @> value`,
which its own btree index cannot serve, so up.sh has PostgreSQL give every FerretDB table a GIN
index on that expression. Checked with FerretDB's `explain`, which shows PostgreSQL's plan. MongoDB
serves `_id` from its own index, and FerretDB's SQLite handler shows no PostgreSQL plan: skipped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from tests.support.infra import Infra

pytestmark = pytest.mark.integration


def _index_names(plan: dict[str, Any]) -> Iterator[str]:
    if "Index Name" in plan:
        yield str(plan["Index Name"])
    for child in plan.get("Plans", ()):
        yield from _index_names(child)


@pytest.fixture
def ferretdb_pg(infra: Infra) -> Iterator[Database[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(infra.mongodb_uri)
    if "ferretdbVersion" not in client.admin.command("buildInfo"):
        client.close()
        pytest.skip("not FerretDB: MongoDB serves _id from its own index")
    db = client[infra.unique("test_id_index_")]
    try:
        yield db
    finally:
        client.drop_database(db.name)
        client.close()


def test_finds_and_replaces_by_id_use_the_index(ferretdb_pg: Database[dict[str, Any]]) -> None:
    docs = ferretdb_pg["docs"]
    docs.insert_many([{"_id": f"doc-{i}", "v": 1, "pad": "x" * 200} for i in range(5000)])
    explained = ferretdb_pg.command(
        "explain", {"find": "docs", "filter": {"_id": "doc-7", "v": 1}}, verbosity="queryPlanner"
    )
    plan = explained.get("queryPlanner", {}).get("Plan")
    if plan is None:
        pytest.skip("FerretDB's SQLite handler: no PostgreSQL plan")
    assert explained["filterPushdown"] is True
    assert [name for name in _index_names(plan) if name.endswith("_id_gin")], plan
    # The index changes how rows are found, never which: a version-guarded replace and a find.
    assert docs.replace_one({"_id": "doc-7", "v": 1}, {"v": 2, "pad": ""}).matched_count == 1
    assert docs.replace_one({"_id": "doc-7", "v": 1}, {"v": 3, "pad": ""}).matched_count == 0
    assert docs.find_one({"_id": "doc-7"}) == {"_id": "doc-7", "v": 2, "pad": ""}
    assert docs.count_documents({"v": 1}) == 4999
