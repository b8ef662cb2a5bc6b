"""The local stack's usage ledger keeps its `_id`s unique with a text index instead of FerretDB's jsonb
one (scripts/infra/ferretdb_text_id_indexes.sql): the duplicates the usage-meter relies on are still
refused, one by one and inside an unordered insert, on any server; on FerretDB over PostgreSQL the
index PostgreSQL holds is checked too (with psql, when the local stack's is at hand)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ailab_runtime.mongo_server import is_ferretdb
from tests.support.local_postgres import psql_rows

pytestmark = pytest.mark.integration


async def test_the_usage_ledger_refuses_duplicate_ids(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    ledger = mongo_db["usage_ledger"]
    await ledger.insert_many([{"_id": f"ev-{i}", "s": "2026-11-28|0|1"} for i in range(300)])
    with pytest.raises(DuplicateKeyError):
        await ledger.insert_one({"_id": "ev-7", "s": "2026-11-28|0|2"})
    with pytest.raises(BulkWriteError) as refused:
        await ledger.insert_many(
            [{"_id": i, "s": "2026-11-28|0|3"} for i in ("ev-new-1", "ev-8", "ev-new-2", "ev-299")],
            ordered=False,
        )
    errors = refused.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, 11000), (3, 11000)]
    assert await ledger.count_documents({}) == 302
    assert await ledger.find_one({"_id": "ev-8"}) == {"_id": "ev-8", "s": "2026-11-28|0|1"}  # first kept
    deleted = await ledger.delete_many({"_id": {"$in": ["ev-new-1", "ev-new-2"]}})
    assert deleted.deleted_count == 2
    assert await ledger.count_documents({}) == 300


def _postgres_index_definitions(schema: str) -> dict[str, str] | None:
    """{table: unique index definition} of a FerretDB database's tables, or None without psql."""
    rows = psql_rows(
        "SELECT tablename, indexdef FROM pg_indexes "
        f"WHERE schemaname = '{schema}' AND indexdef LIKE 'CREATE UNIQUE INDEX%' "
        "AND tablename NOT LIKE '\\_%'"
    )
    return None if rows is None else {table: "|".join(rest) for table, *rest in rows}


async def test_postgresql_holds_a_text_id_index_on_the_usage_ledger_only(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    if not await is_ferretdb(mongo_db):
        pytest.skip("not FerretDB: MongoDB indexes `_id` itself")
    if os.environ.get("AILAB_FERRETDB_TEXT_ID_INDEXES") == "0":
        pytest.skip("AILAB_FERRETDB_TEXT_ID_INDEXES=0: new ledgers keep FerretDB's jsonb index")
    for name in ("usage_ledger", "usage_ledger_records"):
        await mongo_db[name].insert_one({"_id": "ev-1", "s": "2026-11-28|0|1"})
    indexes = _postgres_index_definitions(mongo_db.name)
    if indexes is None:
        pytest.skip("FerretDB's PostgreSQL is not reachable with psql here")
    ledger = [d for t, d in indexes.items() if t.startswith("usage_ledger_") and "records" not in t]
    records = [d for t, d in indexes.items() if t.startswith("usage_ledger_records_")]
    assert len(ledger) == 1 and "((_jsonb ->> '_id'::text))" in ledger[0]
    assert len(records) == 1 and "((_jsonb -> '_id'::text))" in records[0]  # not listed: FerretDB's
