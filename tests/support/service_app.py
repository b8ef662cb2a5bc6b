"""One service's FastAPI app on the real infrastructure, for integration tests.

Every service's integration `conftest.py` starts its app once per module on a database and topic
prefix no other module uses, enters the app's lifespan (relay, consumers) and calls it through an
httpx client carrying the internal token and principal headers, as the gateway would. The common part
lives here; each conftest keeps what is its own (its Settings and their overrides, fakes, helpers).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from ailab_contracts import REGISTRY, new_envelope
from ailab_runtime.kafka import encode
from ailab_runtime.service import Runtime, ServiceSpec, create_app
from ailab_runtime.settings import ServiceSettings
from tests.support.infra import Infra

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
T = TypeVar("T")


def infra_settings(infra: Infra, database_prefix: str, topic_prefix: str) -> dict[str, Any]:
    """The Settings values every service's test app shares: the stack's addresses, a database and a
    topic prefix of the module's own (so modules never see each other's data), the test environment."""
    return {
        "mongodb_uri": infra.mongodb_uri,
        "kafka_bootstrap_servers": infra.kafka_bootstrap_servers,
        "mongodb_database": infra.unique(database_prefix),
        "topic_prefix": infra.unique(topic_prefix) + ".",
        "environment": "test",
    }


async def wait_for_mongo(uri: str, timeout_s: float = 60.0) -> None:
    """Wait until MongoDB (FerretDB) answers a ping: right after the stack starts it may not yet."""
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


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    timeout_s: float = 60.0,
    interval_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Await `probe()` until `accept` holds for what it returns (truthy by default) and return that,
    failing after `timeout_s`: projections, consumers and the relay are asynchronous, so tests wait for
    their effects instead of sleeping."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await probe()
        if accept(value):
            return value
        assert asyncio.get_running_loop().time() < deadline, f"{what} never held; last: {value!r}"
        await asyncio.sleep(interval_s)


async def wait_until_ready(client: httpx.AsyncClient, name: str, timeout_s: float = 60.0) -> None:
    """Wait until the app's `/readyz` answers 200 (its consumers and relay are running): tests that read
    the service's topics or feed its consumers must not start earlier."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await client.get("/readyz")).status_code != 200:
        assert asyncio.get_running_loop().time() < deadline, f"{name} never became ready"
        await asyncio.sleep(0.2)


@asynccontextmanager
async def running_app(
    spec: ServiceSpec,
    settings: ServiceSettings,
    *,
    base_url: str,
    principal: Mapping[str, str],
    wait_ready: bool = True,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The service's app with its lifespan entered and a client calling it as the gateway does
    (internal token + `principal` headers); waits for `/readyz` when `wait_ready`. The module's database
    is dropped on the way out."""
    app = create_app(spec, settings)
    headers = {"X-Internal-Token": settings.internal_token, **principal}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers) as client:
            if wait_ready:
                await wait_until_ready(client, spec.name)
            yield app, client
    cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
    await cleanup.drop_database(settings.database_name)
    await cleanup.close()


@dataclass
class ServiceApp(Generic[SettingsT]):
    """What a service's module fixture hands to its tests: the running app, its settings and the
    gateway-like client. Services subclass it with their own helpers."""

    app: FastAPI
    settings: SettingsT
    client: httpx.AsyncClient
    _versions: dict[str, int] = field(default_factory=dict, kw_only=True)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @staticmethod
    def tenant() -> str:
        """A tenant id no other test uses."""
        return f"ten_{uuid.uuid4().hex[:10]}"

    async def publish(
        self, topic: str, tenant: str, stream_id: str, *events: BaseModel, producer: str = "test"
    ) -> list[str]:
        """Publish events to the module's prefixed `topic` as their producing service's relay would:
        envelopes of one stream with consecutive versions, key = tenant, `event_type` header. Returns the
        event ids. Services under test learn other contexts' facts only from such events."""
        kafka = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap_servers, acks="all")
        await kafka.start()
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
                    producer=producer,
                )
                ids.append(str(envelope.event_id))
                await kafka.send_and_wait(
                    self.settings.topic(topic),
                    value=encode(envelope.to_wire()),
                    key=tenant.encode(),
                    headers=[("event_type", envelope.event_type.encode())],
                )
        finally:
            await kafka.stop()
        return ids
