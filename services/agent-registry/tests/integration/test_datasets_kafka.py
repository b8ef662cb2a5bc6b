"""Datasets and Kafka: the plan limit learnt from real `tenancy.*` events (413 past it), and the
`storage_mb` usage of every upload, replacement and delete published on `ailab.usage.events`."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from agent_registry.datasets.plans import TENANT_PLANS
from agent_registry.datasets.storage import EXAMPLES, FILES_BUCKET, UPLOADS
from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.tenancy import TenantCreated, TenantLimits, TenantUpdated
from ailab_contracts.topics import TENANCY, USAGE
from ailab_runtime.kafka import encode
from tests.support.kafka import read_topic
from tests.support.service_app import wait_until_ready

from .conftest import Registry

pytestmark = pytest.mark.integration

LIMITS = TenantLimits(
    max_users=3, max_projects=3, max_requests_per_month=1000, max_tokens_per_month=100_000, max_storage_gb=1
)


async def publish_tenancy(registry: Registry, tenant: str, version: int, event: BaseModel) -> None:
    envelope = new_envelope(
        REGISTRY,
        event,
        stream_id=f"tenant:{tenant}",
        stream_version=version,
        tenant_id=tenant,
        producer="gateway",
    )
    producer = AIOKafkaProducer(bootstrap_servers=registry.settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            registry.settings.topic(TENANCY),
            value=encode(envelope.to_wire()),
            key=tenant.encode(),
            headers=[("event_type", envelope.event_type.encode())],
        )
    finally:
        await producer.stop()


async def wait_for_plan(registry: Registry, tenant: str, plan: str, version: int) -> None:
    col = registry.runtime.db[TENANT_PLANS]
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        doc = await col.find_one({"_id": tenant})
        if doc and doc.get("plan") == plan and doc["_version"] == version:
            return
        assert asyncio.get_running_loop().time() < deadline, f"plan never recorded: {doc}"
        await asyncio.sleep(0.2)


def jsonl_of_size(size: int) -> bytes:
    """A valid JSONL file of exactly `size` bytes (rows of about 1 KB)."""
    rows: list[bytes] = []
    total = 0
    i = 0
    while size - total > 2048:
        row = json.dumps({"i": i, "text": "x" * 1000}).encode() + b"\n"
        rows.append(row)
        total += len(row)
        i += 1
    overhead = len(json.dumps({"i": i, "text": ""}).encode()) + 1
    rows.append(json.dumps({"i": i, "text": "y" * (size - total - overhead)}).encode() + b"\n")
    data = b"".join(rows)
    assert len(data) == size
    return data


async def body_of(data: bytes, chunk: int = 65536) -> Any:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def test_uploads_past_the_free_plan_limit_get_413(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    tenant = registry.tenant()
    await publish_tenancy(
        registry,
        tenant,
        1,
        TenantCreated(tenant_id=tenant, name="Free Co", plan="free", limits=LIMITS, created_by="usr_admin"),
    )
    await wait_for_plan(registry, tenant, "free", 1)
    dataset = await registry.create(f"/v1/tenants/{tenant}/datasets", {"name": "big"})
    path = f"/v1/tenants/{tenant}/datasets/{dataset['id']}/upload"
    headers = {"Content-Type": "application/x-ndjson"}

    exactly = jsonl_of_size(10_000_000)
    ok = await registry.client.post(path, content=body_of(exactly), headers=headers, timeout=120)
    assert ok.status_code == 200, ok.text
    assert ok.json()["size_bytes"] == 10_000_000

    over = jsonl_of_size(10_000_001)
    refused = await registry.client.post(path, content=body_of(over), headers=headers, timeout=120)
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit_bytes": 10_000_000, "plan": "free"}
    # a declared Content-Length over the limit is refused before the body is read
    declared = await registry.client.post(path, content=over, headers=headers, timeout=120)
    assert declared.status_code == 413

    # nothing of the refused uploads is kept; the accepted file is still the dataset's file
    db = registry.runtime.db
    current = ok.json()["upload_id"]
    uploads = {
        d["upload_id"] async for d in db[EXAMPLES].find({"tenant_id": tenant, "dataset_id": dataset["id"]})
    }
    files = {d["_id"] async for d in db[f"{FILES_BUCKET}.files"].find({"metadata.dataset_id": dataset["id"]})}
    assert uploads == files == {current}
    every_file = {d["_id"] async for d in db[f"{FILES_BUCKET}.files"].find({})}
    assert set(await db[f"{FILES_BUCKET}.chunks"].distinct("files_id")) == every_file  # no orphan chunks
    assert await db[UPLOADS].count_documents({"tenant_id": tenant}) == 0
    after = (await registry.client.get(f"/v1/tenants/{tenant}/datasets/{dataset['id']}")).json()
    assert after["upload_id"] == current

    # the tenant moves to pro: the same file is accepted; an older event replayed does not undo that
    await publish_tenancy(
        registry, tenant, 2, TenantUpdated(tenant_id=tenant, plan="pro", updated_by="usr_admin")
    )
    await wait_for_plan(registry, tenant, "pro", 2)
    await publish_tenancy(
        registry,
        tenant,
        1,
        TenantCreated(tenant_id=tenant, name="Free Co", plan="free", limits=LIMITS, created_by="usr_admin"),
    )
    await publish_tenancy(
        registry, tenant, 3, TenantUpdated(tenant_id=tenant, name="Renamed", updated_by="u")
    )
    await wait_for_plan(registry, tenant, "pro", 3)  # a change without a plan keeps the plan
    accepted = await registry.client.post(path, content=body_of(over), headers=headers, timeout=120)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["size_bytes"] == 10_000_001


async def test_a_tenant_whose_plan_is_unknown_gets_the_free_limit(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await registry.create(f"/v1/tenants/{tenant}/datasets", {"name": "big"})
    refused = await registry.client.post(
        f"/v1/tenants/{tenant}/datasets/{dataset['id']}/upload",
        content=body_of(jsonl_of_size(10_000_001)),
        headers={"Content-Type": "application/x-ndjson"},
        timeout=120,
    )
    assert refused.status_code == 413
    assert refused.json()["error"]["details"]["plan"] == "free"


async def test_storage_usage_is_published_on_the_usage_topic(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    tenant = registry.tenant()
    dataset = await registry.create(f"/v1/tenants/{tenant}/datasets", {"name": "metered"})
    base = f"/v1/tenants/{tenant}/datasets/{dataset['id']}"
    first = jsonl_of_size(1_234_567)
    second = b"a,b\n" + b"1,2\n" * 1000  # 4,004 bytes
    up1 = (
        await registry.client.post(
            f"{base}/upload", content=first, headers={"Content-Type": "application/jsonl"}
        )
    ).json()
    up2 = (await registry.client.post(f"{base}/upload?format=csv", content=second)).json()
    assert (await registry.client.delete(base)).status_code == 204

    topic = registry.settings.topic(USAGE)
    deadline = asyncio.get_running_loop().time() + 60
    mine: list[dict[str, Any]] = []
    while len(mine) < 3:
        assert asyncio.get_running_loop().time() < deadline, f"only {mine} arrived"
        records = await read_topic(registry.settings.kafka_bootstrap_servers, topic, until=3, timeout_s=10)
        mine = [json.loads(r.value or b"{}") for r in records if r.key == tenant.encode()]
    assert [e["event_type"] for e in mine] == ["usage.UsageRecorded"] * 3
    assert {e["stream_id"] for e in mine} == {f"dataset:{tenant}:{dataset['id']}"}
    payloads = [e["payload"] for e in mine]
    assert [p["quantity"] for p in payloads] == ["1.234567", "-1.230563", "-0.004004"]
    assert sum(Decimal(p["quantity"]) for p in payloads) == 0
    assert [p["dimensions"] for p in payloads] == [
        {
            "dataset_id": dataset["id"],
            "bytes_delta": 1_234_567,
            "action": "upload",
            "upload_id": up1["upload_id"],
        },
        {
            "dataset_id": dataset["id"],
            "bytes_delta": -1_230_563,
            "action": "replace",
            "upload_id": up2["upload_id"],
        },
        {
            "dataset_id": dataset["id"],
            "bytes_delta": -4_004,
            "action": "delete",
            "upload_id": up2["upload_id"],
        },
    ]
    for payload in payloads:
        assert (payload["meter"], payload["provider"], payload["tenant_id"], payload["user_id"]) == (
            "storage_mb",
            "internal",
            tenant,
            "usr_test",
        )
        assert payload["request_id"] and payload["timestamp"]
        _, parsed = REGISTRY.parse(next(e for e in mine if e["payload"] is payload))
        assert parsed.model_dump(mode="json") == payload
    # the dataset events went to the registry topic, not the usage topic
    assert all(e["event_type"].startswith("usage.") for e in mine)
