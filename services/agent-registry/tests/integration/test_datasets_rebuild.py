"""Rebuilt dataset views equal the live ones; the sweep finds what interrupted requests left behind
and deletes it, judging from the event store, and leaves current files and running uploads alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_registry.datasets import handlers
from agent_registry.datasets.cleanup import EventStoreUploads, sweep
from agent_registry.datasets.storage import EXAMPLES, FILES_BUCKET, UPLOADS, DatasetFileStore
from agent_registry.datasets.views import VIEWS

from .conftest import Registry

pytestmark = pytest.mark.integration

JSONL = {"Content-Type": "application/x-ndjson"}


async def dataset_views(registry: Registry) -> dict[str, list[dict[str, Any]]]:
    db = registry.runtime.db
    return {name: [d async for d in db[name].find({}).sort("_id", 1)] for name in VIEWS}


async def data_counts(registry: Registry) -> dict[str, int]:
    db = registry.runtime.db
    names = (EXAMPLES, f"{FILES_BUCKET}.files", f"{FILES_BUCKET}.chunks")
    return {name: await db[name].count_documents({}) for name in names}


async def test_rebuild_reproduces_the_dataset_views(registry: Registry) -> None:
    for _ in range(2):
        tenant = registry.tenant()
        base = f"/v1/tenants/{tenant}/datasets"
        kept = await registry.create(base, {"name": "kept", "tags": ["a"], "metadata": {"n": [1, 2.5, None]}})
        await registry.client.post(
            f"{base}/{kept['id']}/upload", content=b'{"a": 1, "b": null}\n', headers=JSONL
        )
        await registry.client.put(f"{base}/{kept['id']}", json={"description": "d", "status": "inactive"})
        await registry.client.post(f"{base}/{kept['id']}/upload?format=csv", content=b"x,y\n1,\n2,true\n")
        empty = await registry.create(base, {"name": "empty"})
        await registry.client.put(f"{base}/{empty['id']}", json={"tags": ["b"]})
        gone = await registry.create(base, {"name": "gone"})
        await registry.client.post(f"{base}/{gone['id']}/upload", content=b'{"z": 1}\n', headers=JSONL)
        assert (await registry.client.delete(f"{base}/{gone['id']}")).status_code == 204
    await registry.runtime.projector.catch_up(older_than=timedelta(0))
    before = await dataset_views(registry)
    data_before = await data_counts(registry)
    assert len(before["datasets"]) >= 6 and len(before["dataset_artifacts"]) >= 2
    assert any(d["status"] == "deleted" for d in before["datasets"])

    await registry.runtime.projector.rebuild()

    assert await dataset_views(registry) == before
    assert await data_counts(registry) == data_before  # files and examples are data, not views


async def settle_all(store: DatasetFileStore) -> None:
    """No stale marker from earlier tests (so each test sees only what it leaves)."""
    await store.uploads.delete_many({})


async def test_the_sweep_deletes_orphans_and_keeps_current_files(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DatasetFileStore(registry.runtime.db)
    uploads = EventStoreUploads(registry.runtime.store, registry.runtime.registry)
    await settle_all(store)
    tenant = registry.tenant()
    base = f"/v1/tenants/{tenant}/datasets"

    # a file replaced, and a dataset deleted, by requests whose clean-up never ran
    async def crashed(*args: Any) -> None:
        return None

    monkeypatch.setattr(handlers, "discard_upload", crashed)
    replaced = await registry.create(base, {"name": "replaced"})
    old = (
        await registry.client.post(f"{base}/{replaced['id']}/upload", content=b'{"v": 1}\n', headers=JSONL)
    ).json()
    new = (
        await registry.client.post(f"{base}/{replaced['id']}/upload", content=b'{"v": 2}\n', headers=JSONL)
    ).json()
    deleted = await registry.create(base, {"name": "deleted"})
    doomed = (
        await registry.client.post(f"{base}/{deleted['id']}/upload", content=b'{"v": 3}\n', headers=JSONL)
    ).json()
    await registry.client.delete(f"{base}/{deleted['id']}")
    monkeypatch.undo()

    # an upload cut off mid-stream by a crash: rows and chunks, no file document, a stale marker
    started = datetime.now(UTC) - timedelta(hours=1)
    crashed_sink = await store.begin(
        tenant_id=tenant,
        dataset_id=replaced["id"],
        upload_id="upl_crashed",
        filename="f",
        fmt="jsonl",
        at=started,
    )
    await crashed_sink.write(b"x" * 300_000)
    await crashed_sink.add_rows([(i + 1, {"v": i}) for i in range(1500)], 300_000)
    await crashed_sink._inserts.wait()  # what the crashed process had stored
    await crashed_sink._file._writes.wait()
    # an upload that committed but whose process died before removing its marker
    await store.uploads.insert_one(
        {
            "_id": new["upload_id"],
            "tenant_id": tenant,
            "dataset_id": replaced["id"],
            "started_at": started,
            "heartbeat_at": started,
        }
    )
    # an upload running right now
    running = await store.begin(
        tenant_id=tenant,
        dataset_id=replaced["id"],
        upload_id="upl_running",
        filename="f",
        fmt="jsonl",
        at=datetime.now(UTC),
    )
    await running.add_rows([(1, {"v": 0})], 10)
    await running._flush()
    await running._inserts.wait()

    async def owners() -> dict[str, set[str]]:
        db = registry.runtime.db
        return {
            "examples": {d["upload_id"] async for d in db[EXAMPLES].find({"tenant_id": tenant})},
            "files": {
                d["_id"] async for d in db[f"{FILES_BUCKET}.files"].find({"metadata.tenant_id": tenant})
            },
            "chunks": set(await db[f"{FILES_BUCKET}.chunks"].distinct("files_id")),
            "markers": {d["_id"] async for d in db[UPLOADS].find({"tenant_id": tenant})},
        }

    before = await owners()
    assert {old["upload_id"], new["upload_id"], doomed["upload_id"], "upl_crashed"} <= before["examples"]

    # stale markers are judged (the crashed upload goes, the committed one keeps its data), while
    # files completed a moment ago and the running upload are left alone
    assert await sweep(store, uploads, datetime.now(UTC)) == 1
    middle = await owners()
    assert middle["examples"] == before["examples"] - {"upl_crashed"}
    assert "upl_crashed" not in middle["chunks"]
    assert middle["files"] == before["files"] == {old["upload_id"], new["upload_id"], doomed["upload_id"]}
    assert middle["markers"] == {"upl_running"}

    later = datetime.now(UTC) + timedelta(minutes=1)
    # a minute later: the running upload has kept beating, the replaced and deleted files are orphans
    await store.uploads.update_one({"_id": "upl_running"}, {"$set": {"heartbeat_at": later}})
    assert await sweep(store, uploads, later, stale_after=timedelta(seconds=30)) == 2
    after = await owners()
    assert after["examples"] == {new["upload_id"], "upl_running"}
    assert after["files"] == {new["upload_id"]}
    assert new["upload_id"] in after["chunks"]
    assert not {old["upload_id"], doomed["upload_id"], "upl_crashed"} & after["chunks"]
    assert after["markers"] == {"upl_running"}
    # the current file still serves, byte for byte
    download = await registry.client.get(f"{base}/{replaced['id']}/download")
    assert download.status_code == 200 and json.loads(download.content) == {"v": 2}
    await running.discard()
    assert "upl_running" not in (await owners())["examples"]
