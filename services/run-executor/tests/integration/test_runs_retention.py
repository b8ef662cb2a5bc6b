"""Retention of run data on the real stack: the cleanup job deletes the logs and spans of runs
finished before the retention window and the claims of finished runs (after their margin), in
small batches; recent and active runs keep theirs; runs and their events stay. The CLI command
`purge-run-data` runs one pass."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from run_executor.adapters.mongo_runs import RUN_CLAIMS, RUN_LOGS, RUN_SPANS, MongoRunRetention
from run_executor.application.retention import RetentionPass, RetentionSettings, RunRetention

from .conftest import Executor
from .test_runs_control import slow_flow
from .test_runs_local import FLOW

pytestmark = pytest.mark.integration


async def stored(executor: Executor, run_id: str) -> dict[str, int]:
    db = executor.runtime.db
    return {
        "logs": await db[RUN_LOGS].count_documents({"run_id": run_id}),
        "spans": await db[RUN_SPANS].count_documents({"run_id": run_id}),
        "claims": await db[RUN_CLAIMS].count_documents({"_id": run_id}),
    }


async def finished_run(executor: Executor, tenant: str, agent_id: str) -> dict[str, Any]:
    created = await executor.start(tenant, agent_id, inputs={"message": "keep or drop"})
    run = await executor.wait(tenant, created["id"])
    assert run["status"] == "succeeded", run
    return run


async def test_the_cli_runs_one_pass(executor: Executor) -> None:
    tenant = executor.tenant()
    run = await finished_run(executor, tenant, await executor.agent(tenant, FLOW))
    before = await stored(executor, run["id"])
    assert before["logs"] > 0 and before["spans"] > 0 and before["claims"] == 1, before
    await asyncio.sleep(1.0)
    settings = executor.settings
    env = {
        **os.environ,
        "MONGODB_URI": settings.mongodb_uri,
        "MONGODB_DATABASE": settings.database_name,
        "ENVIRONMENT": "test",
        "RUN_LOG_RETENTION_DAYS": "0.00001",  # 0.864 s
        "RUN_CLAIM_RETENTION_DAYS": "0.00001",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "run_executor", "purge-run-data"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"deleted {before['logs']} logs, {before['spans']} spans, 1 claims" in done.stdout, done.stdout
    assert await stored(executor, run["id"]) == {"logs": 0, "spans": 0, "claims": 0}


async def test_old_finished_runs_lose_logs_spans_and_claims_recent_and_active_ones_keep_them(
    executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = executor.tenant()
    agent_id = await executor.agent(tenant, FLOW)
    old = await finished_run(executor, tenant, agent_id)
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    recent = await finished_run(executor, tenant, agent_id)
    active = await executor.start(tenant, await executor.agent(tenant, slow_flow(3.0)))  # runs for 30 s
    await executor.wait(tenant, active["id"], ("running",))
    deadline = asyncio.get_running_loop().time() + 10
    while (await stored(executor, active["id"]))["logs"] == 0:  # written behind
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.1)
    kept = {run_id: await stored(executor, run_id) for run_id in (old["id"], recent["id"], active["id"])}
    assert all(kept[r]["logs"] > 2 and kept[r]["spans"] > 0 for r in (old["id"], recent["id"])), kept
    assert all(c["claims"] == 1 for c in kept.values()), kept

    # batches of 2 documents per delete: every run has more logs than that
    retention = RunRetention(
        MongoRunRetention(executor.runtime.db, batch=2),
        RetentionSettings(log_retention=timedelta(days=30), claim_retention=timedelta(days=1)),
    )
    caplog.set_level(logging.INFO, logger="run_executor.retention")

    # a day later: only the claim of the run that finished before `between` is gone
    assert await retention.run_once(now=between + timedelta(days=1)) == RetentionPass(0, 0, 1)
    assert await stored(executor, old["id"]) == {**kept[old["id"]], "claims": 0}
    assert await stored(executor, recent["id"]) == kept[recent["id"]]

    # 30 days later: the old run's logs and spans go, the recent run's claim too; the active run keeps all
    assert await retention.run_once(now=between + timedelta(days=30)) == RetentionPass(
        kept[old["id"]]["logs"], kept[old["id"]]["spans"], 1
    )
    assert await stored(executor, old["id"]) == {"logs": 0, "spans": 0, "claims": 0}
    assert await stored(executor, recent["id"]) == {**kept[recent["id"]], "claims": 0}
    after = await stored(executor, active["id"])
    assert after["logs"] >= kept[active["id"]]["logs"] > 0 and after["claims"] == 1, after
    assert await retention.run_once(now=between + timedelta(days=30)) == RetentionPass(0, 0, 0)
    assert "run data retention pass: deleted 0 logs, 0 spans, 1 claims" in caplog.messages

    # the runs and their events stay
    response = await executor.client.get(f"/v1/tenants/{tenant}/runs/{old['id']}")
    assert response.status_code == 200 and response.json()["status"] == "succeeded"
    events = executor.runtime.db["events"]
    assert await events.count_documents({"stream_id": f"run:{tenant}:{old['id']}"}) > 0
    cancel = await executor.client.patch(
        f"/v1/tenants/{tenant}/runs/{active['id']}", json={"status": "cancelled"}
    )
    assert cancel.status_code == 200, cancel.text
