"""Write-behind batching of run logs and spans on the real MongoDB-wire server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from run_executor.adapters.write_behind import WriteBehind

pytestmark = pytest.mark.integration


async def test_flush_stores_everything_added_before_and_skips_duplicates(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    col = mongo_db["lines"]
    writes = WriteBehind(col, delay_s=30, max_batch=1000)  # nothing written by the timer in this test
    for i in range(120):
        await writes.add({"_id": f"r1:{i:04d}", "n": i})
    assert await col.count_documents({}) == 0, "batched, not written one by one"
    await writes.add({"_id": "r1:0007", "n": 7})  # the same line again (a retried write)
    await writes.flush()
    assert await col.count_documents({}) == 120
    await writes.close()


async def test_full_batches_and_the_timer_write_without_a_flush(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    col = mongo_db["spans"]
    writes = WriteBehind(col, delay_s=0.05, max_batch=10)
    for i in range(10):
        await writes.add({"_id": i})
    assert await col.count_documents({}) == 10, "a full batch is written at once"
    await writes.add({"_id": 10})
    for _ in range(100):
        if await col.count_documents({}) == 11:
            break
        await asyncio.sleep(0.02)
    assert await col.count_documents({}) == 11, "the timer wrote the rest"
    await writes.close()


async def test_concurrent_flushes_return_only_after_their_documents_are_stored(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    col = mongo_db["logs"]
    writes = WriteBehind(col, delay_s=0.01, max_batch=50)

    async def run(run_id: int) -> None:
        for i in range(30):
            await writes.add({"_id": f"{run_id}:{i}", "run": run_id})
        await writes.flush()
        assert await col.count_documents({"run": run_id}) == 30

    await asyncio.gather(*(run(r) for r in range(20)))
    assert await col.count_documents({}) == 600
    await writes.close()
