"""The usage-meter app on real MongoDB (FerretDB) and Kafka, started once per test module on a unique
database and topic prefix, with windows short enough to close a day within the test: the late-arrival
window ends a few seconds after the module starts, measured from today's midnight (UTC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.infra import Infra
from tests.support.kafka import read_events
from tests.support.service_app import ServiceApp, eventually, infra_settings, running_app, wait_for_mongo
from usage_meter.bootstrap import SPEC
from usage_meter.config import Settings
from usage_meter.wiring import UsageMeterServices

HEADERS = {"X-Principal-Id": "usr_test", "X-Principal-Role": "developer"}
CLOSE_MARGIN_S = 5.0


@dataclass
class Meter(ServiceApp[Settings]):
    today_start: datetime

    @property
    def services(self) -> UsageMeterServices:
        services: UsageMeterServices = self.runtime.extras["usage"]
        return services

    async def ingest(self, tenant: str, events: list[dict[str, Any]], status: int = 202) -> dict[str, Any]:
        response = await self.client.post(f"/v1/tenants/{tenant}/usage/events", json={"events": events})
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    async def until(self, probe: Any, timeout_s: float = 60, what: str = "condition") -> Any:
        return await eventually(probe, timeout_s=timeout_s, what=what)

    async def daily(self, tenant: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(f"/v1/tenants/{tenant}/usage/daily", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def usage_events(self, event_type: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        found: list[dict[str, Any]] = []
        while asyncio.get_running_loop().time() < deadline:
            bodies = await read_events(
                self.settings.kafka_bootstrap_servers, self.settings.topic("ailab.usage.events"), 0, 5
            )
            found = [b for b in bodies if b.get("event_type") == event_type]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.3)
        raise AssertionError(f"expected {count} {event_type}, got {len(found)}")


def settings_for(infra: Infra, now: datetime, **overrides: Any) -> Settings:
    today_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Yesterday closes CLOSE_MARGIN_S + 1 s (the acceptance grace) after now.
    values: dict[str, Any] = {
        **infra_settings(infra, "test_usage_", "tusage"),
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
    async with running_app(SPEC, settings, base_url="http://usage", principal=HEADERS) as (app, client):
        yield Meter(app, settings, client, now.replace(hour=0, minute=0, second=0, microsecond=0))


def day_offset(meter: Meter, seconds_before_midnight: float = 1) -> str:
    return (meter.today_start - timedelta(seconds=seconds_before_midnight)).isoformat()


__all__ = ["Meter", "day_offset", "settings_for"]
