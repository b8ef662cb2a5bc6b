"""The billing app on real MongoDB, Kafka and stripe-mock, started once per test module, beside a
small HTTP server answering the usage-meter's monthly route exactly as the agreed API shape says
(`GET /v1/tenants/{tenant_id}/usage/monthly?from=YYYY-MM&to=YYYY-MM`, internal token required).

Billing learns tenants, users, projects and closed days from Kafka only, so tests publish tenancy,
registry and usage events to the module's prefixed topics as their producers would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from ailab_contracts.events.tenancy import TenantCreated
from ailab_contracts.topics import BILLING, TENANCY
from billing.bootstrap import SPEC
from billing.config import Settings
from tests.support.infra import Infra
from tests.support.kafka import read_events
from tests.support.service_app import ServiceApp, eventually, infra_settings, running_app, wait_for_mongo
from tests.support.stripe_events import signed_delivery

WEBHOOK_SECRET = "whsec_billing_integration"
ADMIN = {"X-Principal-Id": "usr_admin", "X-Principal-Role": "tenant_admin"}
PLATFORM = {"X-Principal-Id": "usr_root", "X-Principal-Role": "platform_admin"}
_MONTHLY = re.compile(r"^/v1/tenants/([^/]+)/usage/monthly$")


class FakeUsageMeter:
    """Answers `GET /v1/tenants/{t}/usage/monthly` from `monthly[(tenant, month)] = {meter: quantity}`."""

    def __init__(self, internal_token: str) -> None:
        self.monthly: dict[tuple[str, str], dict[str, str]] = {}
        self.calls: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                fake.calls.append(self.path)
                match = _MONTHLY.match(url.path)
                if self.headers.get("X-Internal-Token") != internal_token:
                    return self._send(401, {"error": {"code": "unauthorized", "message": "no token"}})
                if not match:
                    return self._send(404, {"error": {"code": "not_found", "message": url.path}})
                query = parse_qs(url.query)
                tenant, start, end = match.group(1), query["from"][0], query["to"][0]
                items = []
                for (t, month), meters in sorted(fake.monthly.items()):
                    if t == tenant and start <= month <= end:
                        items.append(
                            {
                                "tenant_id": t,
                                "month": month,
                                "meters": {
                                    m: {
                                        "quantity": q,
                                        "cost_usd_estimate": "0",
                                        "events": 1,
                                        "unique_users": 1,
                                        "unique_projects": 1,
                                    }
                                    for m, q in meters.items()
                                },
                            }
                        )
                return self._send(200, {"items": items, "next_cursor": None})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeUsageMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Billing(ServiceApp[Settings]):
    usage_meter: FakeUsageMeter

    async def create_tenant(self, tenant: str, plan: str) -> dict[str, Any]:
        from billing.domain.plans import PLANS

        await self.publish(
            TENANCY,
            tenant,
            f"tenant:{tenant}",
            TenantCreated(
                tenant_id=tenant,
                name=f"Tenant {tenant}",
                plan=plan,
                limits=PLANS[plan].limits,
                created_by="usr_root",  # type: ignore[arg-type]
            ),
        )
        return await self.eventually(lambda: self.get_json(f"/v1/tenants/{tenant}/billing/plan"))

    async def get_json(self, path: str, **params: Any) -> dict[str, Any] | None:
        response = await self.client.get(path, params=params)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def eventually(self, probe: Any, check: Any = None, timeout_s: float = 30) -> Any:
        """Poll `probe()` until it returns something (passing `check`), bounded by the timeout."""
        return await eventually(
            probe, lambda value: value is not None and (check is None or check(value)), timeout_s=timeout_s
        )

    async def billing_events(self, tenant: str, event_type: str, at_least: int = 0) -> list[dict[str, Any]]:
        """Billing events of the tenant published on the prefixed `ailab.billing.events`."""
        deadline = time.monotonic() + 30
        while True:
            bodies = await read_events(
                self.settings.kafka_bootstrap_servers, self.settings.topic(BILLING), until=0, timeout_s=5
            )
            found = [
                body
                for body in bodies
                if body.get("event_type") == event_type and body.get("tenant_id") == tenant
            ]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)

    def signed(self, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
        return signed_delivery(event, secret)

    async def webhook(self, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> httpx.Response:
        body, headers = self.signed(event, secret)
        return await self.client.post("/webhooks/stripe", content=body, headers=headers)


@pytest.fixture(scope="module")
def fake_usage_meter() -> Iterator[FakeUsageMeter]:
    with FakeUsageMeter(Settings().internal_token) as server:
        yield server


@pytest.fixture(scope="module")
async def billing(infra: Infra, fake_usage_meter: FakeUsageMeter) -> AsyncIterator[Billing]:
    await wait_for_mongo(infra.mongodb_uri)
    settings = Settings(
        **infra_settings(infra, "test_billing_", "tbill"),
        stripe_api_base=os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111"),
        stripe_webhook_secret=WEBHOOK_SECRET,
        billing_grace_period_s=0,
        usage_sync_backoff_s=0.3,
        billing_loop_interval_s=0.2,
        invoice_close_delay_s=0,
        usage_meter_url=fake_usage_meter.base_url,
    )
    async with running_app(SPEC, settings, base_url="http://billing", principal=ADMIN) as (app, client):
        yield Billing(app, settings, client, fake_usage_meter)
