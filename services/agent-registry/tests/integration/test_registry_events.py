"""Recorded events reach Kafka through the outbox relay, keyed by tenant."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from tests.support.kafka import read_topic
from tests.support.service_app import wait_until_ready

from .conftest import Registry

pytestmark = pytest.mark.integration


async def test_registry_events_are_published_in_stream_order(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    deadline = asyncio.get_running_loop().time() + 60
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    await registry.version(tenant, agent["id"])
    await registry.client.put(
        f"/v1/tenants/{tenant}/agents/{agent['id']}/versions/1", json={"status": "deprecated"}
    )

    topic = registry.settings.topic(REGISTRY_TOPIC)
    expected = ["registry.AgentCreated", "registry.AgentVersionPublished", "registry.AgentVersionUpdated"]
    mine: list[dict[str, Any]] = []
    while len(mine) < len(expected):
        assert asyncio.get_running_loop().time() < deadline, f"only {mine} arrived"
        records = await read_topic(registry.settings.kafka_bootstrap_servers, topic, until=3, timeout_s=10)
        mine = []
        for record in records:
            if record.key == tenant.encode():
                mine.append(json.loads(record.value or b"{}"))
    assert [e["event_type"] for e in mine] == expected
    assert [e["stream_version"] for e in mine] == [1, 2, 3]
    assert mine[1]["payload"]["flow_graph"]["nodes"][0]["id"] == "in"
