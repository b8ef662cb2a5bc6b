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
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import stripe
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.tenancy import TenantCreated
from ailab_contracts.topics import BILLING, TENANCY
from ailab_runtime.kafka import encode
from ailab_runtime.service import Runtime, create_app
from billing.bootstrap import SPEC
from billing.config import Settings
from tests.support.infra import Infra
from tests.support.kafka import read_topic

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
class Billing:
    app: FastAPI
    settings: Settings
    client: httpx.AsyncClient
    usage_meter: FakeUsageMeter
    _versions: dict[str, int] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @staticmethod
    def tenant() -> str:
        return f"ten_{uuid.uuid4().hex[:10]}"

    async def publish(self, topic: str, tenant: str, stream_id: str, *events: BaseModel) -> list[str]:
        """Publish events as their producer would: one stream, consecutive versions, key = tenant."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all")
        await producer.start()
        ids = []
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
                ids.append(str(envelope.event_id))
                await producer.send_and_wait(
                    self.settings.topic(topic),
                    value=encode(envelope.to_wire()),
                    key=tenant.encode(),
                    headers=[("event_type", envelope.event_type.encode())],
                )
        finally:
            await producer.stop()
        return ids

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
        deadline = time.monotonic() + timeout_s
        while True:
            value = await probe()
            if value is not None and (check is None or check(value)):
                return value
            assert time.monotonic() < deadline, f"condition never held; last value: {value}"
            await asyncio.sleep(0.1)

    async def billing_events(self, tenant: str, event_type: str, at_least: int = 0) -> list[dict[str, Any]]:
        """Billing events of the tenant published on the prefixed `ailab.billing.events`."""
        deadline = time.monotonic() + 30
        while True:
            records = await read_topic(
                self.settings.kafka_bootstrap_servers, self.settings.topic(BILLING), until=0, timeout_s=5
            )
            found = [
                body
                for body in (json.loads(r.value or b"{}") for r in records)
                if body.get("event_type") == event_type and body.get("tenant_id") == tenant
            ]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)

    def signed(self, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
        payload = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(payload, secret)  # type: ignore[attr-defined]
        return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}

    async def webhook(self, event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> httpx.Response:
        body, headers = self.signed(event, secret)
        return await self.client.post("/webhooks/stripe", content=body, headers=headers)


def stripe_event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "type": kind,
        "livemode": False,
        "data": {"object": obj},
    }


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


@pytest.fixture(scope="module")
def fake_usage_meter() -> Iterator[FakeUsageMeter]:
    with FakeUsageMeter(Settings().internal_token) as server:
        yield server


@pytest.fixture(scope="module")
async def billing(infra: Infra, fake_usage_meter: FakeUsageMeter) -> AsyncIterator[Billing]:
    await wait_for_mongo(infra.mongodb_uri)
    settings = Settings(
        mongodb_uri=infra.mongodb_uri,
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        mongodb_database=infra.unique("test_billing_"),
        topic_prefix=infra.unique("tbill") + ".",
        environment="test",
        stripe_api_base=os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111"),
        stripe_webhook_secret=WEBHOOK_SECRET,
        billing_grace_period_s=0,
        usage_sync_backoff_s=0.3,
        billing_loop_interval_s=0.2,
        invoice_close_delay_s=0,
        usage_meter_url=fake_usage_meter.base_url,
    )
    app = create_app(SPEC, settings)
    headers = {"X-Internal-Token": settings.internal_token, **ADMIN}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://billing", headers=headers
        ) as client:
            deadline = asyncio.get_running_loop().time() + 60
            while (await client.get("/readyz")).status_code != 200:
                assert asyncio.get_running_loop().time() < deadline, "billing never became ready"
                await asyncio.sleep(0.2)
            yield Billing(app, settings, client, fake_usage_meter)
    cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri)
    await cleanup.drop_database(settings.database_name)
    await cleanup.close()
