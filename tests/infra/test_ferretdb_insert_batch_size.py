"""The local stack's FerretDB writes an insert command `-insert-batch-size` documents per SQL statement
and transaction instead of FerretDB's fixed 100 (scripts/infra/install.sh builds it with the number
settable; up.sh passes AILAB_FERRETDB_INSERT_BATCH_SIZE, 500): an unordered insert still stores every
new document and reports each duplicate at its own index, on any server; on the local stack's
FerretDB the transactions that wrote the rows are counted too (their `xmin`, with psql), against the
batch size the running server was given."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from ailab_runtime.mongo_server import is_ferretdb
from tests.support.local_postgres import psql_rows

pytestmark = pytest.mark.integration

DOCUMENTS = 1_200  # three batches of 500 (the last one partial), twelve of FerretDB's own 100


async def test_an_unordered_insert_reports_each_duplicate_across_batches(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    probe = mongo_db["insert_batch_probe"]
    await probe.insert_many([{"_id": f"ev-{i}"} for i in (3, 700, 1_199)])
    docs = [{"_id": f"ev-{i}", "n": i} for i in range(DOCUMENTS)]
    with pytest.raises(BulkWriteError) as refused:
        await probe.insert_many(docs, ordered=False)  # one `insert` command: far below its limits
    errors = refused.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(3, 11000), (700, 11000), (1_199, 11000)]
    assert await probe.count_documents({}) == DOCUMENTS
    assert await probe.count_documents({"n": {"$exists": True}}) == DOCUMENTS - 3


async def test_postgresql_wrote_one_transaction_per_batch(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    if not await is_ferretdb(mongo_db):
        pytest.skip("not FerretDB: MongoDB has no such batches")
    batch = _local_ferretdb_batch_size()
    if batch is None:
        pytest.skip("not the local stack's FerretDB (no pid file of it under AILAB_DATA_DIR)")
    await mongo_db["insert_batch_probe"].insert_many([{"_id": f"ev-{i}"} for i in range(DOCUMENTS)])
    tables = psql_rows(f"SELECT tablename FROM pg_tables WHERE schemaname = '{mongo_db.name}'")
    probes = [t for [t] in tables or [] if t.startswith("insert_batch_probe_")]
    if len(probes) != 1:
        pytest.skip("FerretDB's PostgreSQL is not reachable with psql here, or is another one")
    table = probes[0]
    counted = psql_rows(f'SELECT count(*), count(DISTINCT xmin::text) FROM "{mongo_db.name}"."{table}"')
    assert counted is not None
    rows, transactions = (int(v) for v in counted[0])
    assert rows == DOCUMENTS
    assert transactions == -(-DOCUMENTS // batch)  # ceil: 3 with 500, 12 with FerretDB's own 100


def _local_ferretdb_batch_size() -> int | None:
    """The `-insert-batch-size` the local stack's running FerretDB was started with (FerretDB's own
    100 without one), or None when no FerretDB of the local stack runs (scripts/infra's pid file)."""
    data_dir = os.environ.get("AILAB_DATA_DIR") or Path(__file__).resolve().parents[2] / ".data"
    pid_file = Path(data_dir) / "run" / "ferretdb.pid"
    try:
        pid = pid_file.read_text().split()[0]
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (OSError, IndexError):
        return None
    if "ferretdb" not in arguments[0]:  # the pid was reused
        return None
    if "-insert-batch-size" not in arguments:
        return 100
    return int(arguments[arguments.index("-insert-batch-size") + 1])
