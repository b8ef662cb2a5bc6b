"""The usage-meter app on real MongoDB (FerretDB) and Kafka, started once per test module on a unique
database and topic prefix, with windows short enough to close a day within the test: the late-arrival
window ends a few seconds after the module starts, measured from today's midnight (UTC)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from ailab_contracts import REGISTRY, new_envelope
from ailab_runtime.kafka import encode
from ailab_runtime.service import Runtime, create_app
from tests.support.infra import Infra
from tests.support.kafka import read_topic
from usage_meter.bootstrap import SPEC
from usage_meter.config import Settings
from usage_meter.wiring import UsageMeterServices

HEADERS = {"X-Principal-Id": "usr_test", "X-Principal-Role": "developer"}
CLOSE_MARGIN_S = 5.0


@dataclass
class Meter:
    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient
    today_start: datetime
    _versions: dict[str, int] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def services(self) -> UsageMeterServices:
        services: UsageMeterServices = self.runtime.extras["usage"]
        return services

    async def publish(self, topic: str, tenant: str, stream_id: str, *events: BaseModel) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            for event in events:
                version = self._versions.get(stream_id, 0) + 1
                self._versions[stream_id] = version
                envelope = new_envelope(
                    REGISTRY,
                    event,
                    stream_id=stream_id,
                    stream_version=version,
                    tenant_id=tenant,
                    producer="test",
                )
                await producer.send_and_wait(
                    self.settings.topic(topic), value=encode(envelope.to_wire()), key=tenant.encode()
                )
        finally:
            await producer.stop()

    async def ingest(self, tenant: str, events: list[dict[str, Any]], status: int = 202) -> dict[str, Any]:
        response = await self.client.post(f"/v1/tenants/{tenant}/usage/events", json={"events": events})
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until(self, probe: Any, timeout_s: float = 60, what: str = "condition") -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        last = None
        while True:
            last = await probe()
            if last:
                return last
            assert asyncio.get_running_loop().time() < deadline, f"{what} never held; last: {last!r}"
            await asyncio.sleep(0.1)

    async def daily(self, tenant: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(f"/v1/tenants/{tenant}/usage/daily", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def usage_events(self, event_type: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        found: list[dict[str, Any]] = []
        while asyncio.get_running_loop().time() < deadline:
            records = await read_topic(
                self.settings.kafka_bootstrap_servers, self.settings.topic("ailab.usage.events"), 0, 5
            )
            found = [
                b
                for b in (json.loads(r.value or b"{}") for r in records)
                if b.get("event_type") == event_type
            ]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.3)
        raise AssertionError(f"expected {count} {event_type}, got {len(found)}")


async def wait_for_mongo(uri: str, timeout_s: float = 60.0) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=2000)
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while True:
            try:
                await client.admin.command("ping")
                return
            except Exception:  # noqa: BLE001 - keep trying until the deadline
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await client.close()


def settings_for(infra: Infra, now: datetime, **overrides: Any) -> Settings:
    today_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Yesterday closes CLOSE_MARGIN_S + 1 s (the acceptance grace) after now.
    values: dict[str, Any] = {
        "mongodb_uri": infra.mongodb_uri,
        "kafka_bootstrap_servers": infra.kafka_bootstrap_servers,
        "mongodb_database": infra.unique("test_usage_"),
        "topic_prefix": infra.unique("tusage") + ".",
        "environment": "test",
        # Yesterday closes CLOSE_MARGIN_S after now; events from yesterday's last seconds are on time.
        "late_arrival_window_s": (now - today_start).total_seconds() + CLOSE_MARGIN_S,
        "day_close_delay_s": 0,
        "acceptance_grace_s": 1,
        "closer_interval_s": 0.5,
        "quota_interval_s": 0.1,
        "relay_poll_interval_s": 0.02,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
async def meter(infra: Infra) -> AsyncIterator[Meter]:
    await wait_for_mongo(infra.mongodb_uri)
    now = datetime.now(UTC)
    if now.hour == 23 and now.minute >= 58:
        pytest.skip("the day-closing setup needs the clock away from midnight")
    settings = settings_for(infra, now)
    app = create_app(SPEC, settings)
    headers = {"X-Internal-Token": settings.internal_token, **HEADERS}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://usage", headers=headers) as client:
            deadline = asyncio.get_running_loop().time() + 60
            while (await client.get("/readyz")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, "usage-meter never became ready"
                await asyncio.sleep(0.2)
            yield Meter(app, settings, client, now.replace(hour=0, minute=0, second=0, microsecond=0))
    cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    await cleanup.drop_database(settings.database_name)
    await cleanup.close()


def day_offset(meter: Meter, seconds_before_midnight: float = 1) -> str:
    return (meter.today_start - timedelta(seconds=seconds_before_midnight)).isoformat()


__all__ = ["Meter", "day_offset", "settings_for", "wait_for_mongo"]
