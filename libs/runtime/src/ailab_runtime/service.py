"""The process shape every service shares: connections, background loops, HTTP app, CLI.

A service describes itself with a `ServiceSpec` (routers, projections, consumers, migrations);
`create_app` turns it into a FastAPI app with /healthz, /readyz, request ids, tracing and the
shared error shape, and `run_cli` gives it `serve`, `rebuild-projections` and `migrate` commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import BaseModel
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import REGISTRY, EventEnvelope, EventRegistry, new_envelope

from . import topics_for_prefix
from .consumer import Handler, IdempotentConsumer
from .context import request_id_var, tenant_id_var, user_id_var
from .errors import ApiError, ErrorResponse, error_response, install_error_handlers
from .eventstore import Commit, ConcurrencyConflict, MongoEventStore
from .idempotency import IdempotencyStore
from .internal import INTERNAL_TOKEN_HEADER
from .kafka import ensure_topics, kafka_ready, new_producer
from .logging import configure_logging
from .projections import MongoPositionStore, Projection, Projector
from .relay import OutboxRelay, topic_by_context
from .settings import ServiceSettings
from .tracing import configure_tracing, context_from_http, inject_http_headers, tracer

log = logging.getLogger(__name__)


@dataclass
class ConsumerSpec:
    topics: list[str]  # unprefixed names; the runtime adds settings.topic_prefix
    group: str
    handler_factory: Callable[[Runtime], Handler]
    event_types: set[str] | None = None


@dataclass
class ServiceSpec:
    name: str
    title: str
    description: str
    version: str = "0.1.0"
    routers: Sequence[APIRouter] = ()
    projections: Callable[[AsyncDatabase[dict[str, Any]]], Sequence[Projection]] = lambda db: ()
    consumers: Sequence[ConsumerSpec] = ()
    indexes: Callable[[AsyncDatabase[dict[str, Any]]], Awaitable[None]] | None = None
    migrations: Callable[[Runtime], Awaitable[None]] | None = None
    openapi_tags: list[dict[str, str]] = field(default_factory=list)
    extra_setup: Callable[[FastAPI], None] | None = None
    wire: Callable[[Runtime], None] | None = None  # builds service objects into runtime.extras
    # Internal services accept /v1 calls only with the gateway's service credential; the gateway
    # itself is public and authenticates end users instead.
    internal_api: bool = True


class Runtime:
    """Connections and background loops of one service process."""

    def __init__(
        self, spec: ServiceSpec, settings: ServiceSettings, registry: EventRegistry = REGISTRY
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.registry = registry
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=5000
        )
        self.db: AsyncDatabase[dict[str, Any]] = self.mongo[settings.database_name]
        self.store = MongoEventStore(self.db)
        self.idempotency = IdempotencyStore(self.db)
        self.projector = Projector(
            self.store,
            registry,
            spec.projections(self.db),
            MongoPositionStore(self.db["projection_positions"]),
        )
        self.producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[IdempotentConsumer] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.kafka_connected = False
        self.started_at = time.time()
        # Service-specific objects built from this runtime (by ServiceSpec.wire), and their closers.
        self.extras: dict[str, Any] = {}
        self.closers: list[Callable[[], Awaitable[None]]] = []
        if spec.wire:
            spec.wire(self)

    # --- lifecycle -------------------------------------------------------------------------
    async def prepare_database(self) -> None:
        await self.store.ensure_indexes()
        await self.db["processed_events"].create_index("tenant_id")
        if self.spec.indexes:
            await self.spec.indexes(self.db)

    async def start(self) -> None:
        await self.prepare_database()
        self._tasks.append(asyncio.create_task(self._connect_kafka_and_run(), name="kafka"))
        self._tasks.append(asyncio.create_task(self.projector.run_catch_up(self._stop), name="projector"))

    async def _connect_kafka_and_run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            producer = new_producer(self.settings.kafka_bootstrap_servers, self.settings.service_name)
            try:
                await producer.start()
                await ensure_topics(
                    self.settings.kafka_bootstrap_servers, topics_for_prefix(self.settings.topic_prefix)
                )
                break
            except Exception as exc:  # noqa: BLE001
                await producer.stop()
                log.warning("kafka not reachable; retrying", extra={"fields": {"error": str(exc)}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        else:
            return
        self.producer = producer
        self.kafka_connected = True
        self.relay = OutboxRelay(
            self.store,
            producer,
            topic_by_context(self.settings.topic_prefix),
            poll_interval_s=self.settings.relay_poll_interval_s,
            idle_poll_max_s=self.settings.relay_idle_poll_max_s,
        )
        loops: list[Awaitable[None]] = [self.relay.run(self._stop)]
        for spec in self.spec.consumers:
            consumer = IdempotentConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                topics=[self.settings.topic(t) for t in spec.topics],
                group_id=f"{self.settings.topic_prefix}{spec.group}",
                handler=spec.handler_factory(self),
                registry=self.registry,
                db=self.db,
                dlq_producer=producer,
                max_retries=self.settings.consumer_max_retries,
                event_types=spec.event_types,
                fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
            )
            self.consumers.append(consumer)
            loops.append(self._supervise(consumer))
        await asyncio.gather(*loops)

    async def _supervise(self, consumer: IdempotentConsumer) -> None:
        while not self._stop.is_set():
            try:
                await consumer.run(self._stop)
            except Exception:
                log.exception("consumer crashed; restarting")
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        for close in self.closers:
            with contextlib.suppress(Exception):
                await close()
        if self.producer is not None:
            await self.producer.stop()
        await self.mongo.close()

    async def readiness(self) -> dict[str, bool]:
        try:
            await asyncio.wait_for(self.db.command("ping"), 2.0)
            mongo_ok = True
        except Exception:  # noqa: BLE001
            mongo_ok = False
        kafka_ok = self.producer is not None and await kafka_ready(self.producer)
        return {"mongodb": mongo_ok, "kafka": kafka_ok}

    # --- writing events ----------------------------------------------------------------------
    async def record(
        self,
        *,
        stream_id: str,
        expected_version: int,
        tenant_id: str,
        events: Sequence[BaseModel],
    ) -> Commit:
        """Append events as one commit, then apply projections inline (read-your-writes)."""
        envelopes: list[EventEnvelope] = [
            new_envelope(
                self.registry,
                payload,
                stream_id=stream_id,
                stream_version=expected_version + i,
                tenant_id=tenant_id,
                producer=self.settings.service_name,
                correlation_id=request_id_var.get(),
                causation_id=request_id_var.get(),
            )
            for i, payload in enumerate(events, start=1)
        ]
        try:
            commit = await self.store.append(
                stream_id, expected_version, envelopes, trace_headers=inject_http_headers({})
            )
        except ConcurrencyConflict as exc:
            raise ApiError(
                409,
                "conflict",
                "the resource was changed by another request; retry",
                {"stream_id": stream_id},
            ) from exc
        try:
            await self.projector.apply_commit(commit)
        except Exception:  # noqa: BLE001 - the commit is durable; catch-up will project it
            log.exception("inline projection failed; catch-up will retry")
        return commit


def create_app(spec: ServiceSpec, settings: ServiceSettings) -> FastAPI:
    configure_logging(spec.name, settings.log_level)
    configure_tracing(spec.name)
    runtime = Runtime(spec, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if spec.migrations:
            await spec.migrations(runtime)
        log.info("service started", extra={"fields": {"port": settings.port}})
        yield
        await runtime.stop()

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
        openapi_tags=spec.openapi_tags or None,
        responses={422: {"model": ErrorResponse, "description": "Invalid input"}},
    )
    app.state.runtime = runtime
    app.state.settings = settings
    install_error_handlers(app)
    if spec.internal_api:
        _install_internal_guard(app, settings.internal_token)
    _install_request_context(app, spec.name)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: Kafka and MongoDB connections work",
        responses={503: {"description": "A dependency is not reachable"}},
    )
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(checks.values())
        return JSONResponse(
            status_code=200 if ok else 503,
            content={"status": "ready" if ok else "not_ready", "checks": checks},
        )

    for router in spec.routers:
        app.include_router(router)
    if spec.extra_setup:
        spec.extra_setup(app)
    return app


def _install_request_context(app: FastAPI, service: str) -> None:
    access = logging.getLogger(f"{service}.access")

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request_id_var.set(request_id)
        tenant_id_var.set(None)
        user_id_var.set(None)
        token = otel_context.attach(context_from_http(request.headers))
        started = time.perf_counter()
        try:
            with tracer(service).start_as_current_span(
                f"{request.method} {request.url.path}", kind=trace.SpanKind.SERVER
            ) as span:
                response = await call_next(request)
                span.set_attribute("http.status_code", response.status_code)
        finally:
            otel_context.detach(token)
        response.headers["X-Request-ID"] = request_id
        if request.url.path not in ("/healthz", "/readyz"):
            access.info(
                "request",
                extra={
                    "fields": {
                        "method": request.method,
                        "path": request.url.path,
                        "status": response.status_code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        # The route ran in a child context, so take tenant and caller from the scope.
                        "tenant_id": (request.scope.get("path_params") or {}).get("tenant_id"),
                        "user_id": getattr(getattr(request.state, "principal", None), "subject", None)
                        or request.headers.get("x-principal-id"),
                    }
                },
            )
        return response


def _install_internal_guard(app: FastAPI, token: str) -> None:
    """Refuse /v1 calls without the service credential before anything else (body parsing included)."""

    @app.middleware("http")
    async def internal_guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path.startswith("/v1/"):
            given = request.headers.get(INTERNAL_TOKEN_HEADER.lower(), "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error_response(401, "unauthorized", "missing or invalid internal service credential")
        return await call_next(request)


def run_cli(spec: ServiceSpec, settings_cls: type[ServiceSettings]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {spec.name.replace('-', '_')}", description=spec.description
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API, the outbox relay, projectors and consumers")
    serve.add_argument("--port", type=int, default=None, help="override PORT")
    sub.add_parser("rebuild-projections", help="drop every read model and replay the event store")
    sub.add_parser("migrate", help="create indexes and run idempotent data migrations")
    args = parser.parse_args()
    settings = settings_cls()
    if args.command == "serve":
        import uvicorn

        if args.port:
            settings.port = args.port
        app = create_app(spec, settings)
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    elif args.command == "rebuild-projections":
        asyncio.run(_rebuild(spec, settings))
    elif args.command == "migrate":
        asyncio.run(_migrate(spec, settings))


async def _rebuild(spec: ServiceSpec, settings: ServiceSettings) -> None:
    configure_logging(spec.name, settings.log_level)
    runtime = Runtime(spec, settings)
    await runtime.prepare_database()
    started = time.perf_counter()
    count = await runtime.projector.rebuild()
    print(f"{spec.name}: rebuilt projections from {count} events in {time.perf_counter() - started:.2f}s")
    await runtime.mongo.close()


async def _migrate(spec: ServiceSpec, settings: ServiceSettings) -> None:
    configure_logging(spec.name, settings.log_level)
    runtime = Runtime(spec, settings)
    await runtime.prepare_database()
    if spec.migrations:
        await spec.migrations(runtime)
    print(f"{spec.name}: migrations applied")
    await runtime.mongo.close()
