"""Wires the usage-meter: bulk ingestion and read routes, the batch usage consumer (ledger +
aggregates), the plan/sync consumer, quota evaluation, day closing and ledger retention."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts.topics import USAGE
from ailab_runtime.service import Runtime, ServiceSpec

from .adapters import mongo_store
from .adapters.kafka_usage import UsageConsumer
from .adapters.mongo_store import MongoUsageStore
from .adapters.mongo_views import MongoUsageViews
from .adapters.runtime_io import KafkaUnavailable, KafkaUsagePublisher, RuntimeRecorder
from .application.ingest import UsageIngestor
from .application.jobs import DayCloser, QuotaEvaluator, periodic
from .config import Settings
from .entrypoints.api import ROUTERS
from .entrypoints.consumers import CONSUMERS
from .wiring import UsageMeterServices


def _wire(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings), "the usage-meter needs its own Settings"
    views = MongoUsageViews(runtime.db)
    recorder = RuntimeRecorder(runtime)
    ingestor = UsageIngestor(MongoUsageStore(runtime.db), day_close_after=settings.day_close_after)
    quotas = QuotaEvaluator(
        views, recorder, settings.quota_warning_pct, cache_ttl_s=settings.quota_cache_ttl_s
    )
    group = f"{settings.topic_prefix}usage-meter.ledger"
    consumer = UsageConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.topic(USAGE),
        group_id=group,
        registry=runtime.registry,
        ingestor=ingestor,
        rules=settings.acceptance_rules(),
        producer=lambda: runtime.producer,
        watermarks=runtime.db[mongo_store.WATERMARKS],
        max_records=settings.consumer_max_records,
        max_events=settings.consumer_max_events,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        acceptance_grace=timedelta(seconds=settings.acceptance_grace_s),
        on_batch=quotas.note_applied,
    )
    runtime.extras["usage"] = UsageMeterServices(
        rules=settings.acceptance_rules(),
        publisher=KafkaUsagePublisher(runtime, settings.bulk_publish_timeout_s),
        publisher_errors=KafkaUnavailable,
        views=views,
        ingestor=ingestor,
        consumer=consumer,
        quotas=quotas,
        closer=DayCloser(views, recorder, group),
        extra={},
    )


async def _run_consumer(runtime: Runtime, stop: asyncio.Event) -> None:
    log = logging.getLogger("usage_meter.consumer")
    services: UsageMeterServices = runtime.extras["usage"]
    while not stop.is_set():
        try:
            await services.consumer.run(stop)
        except Exception:
            log.exception("usage consumer crashed; restarting from the committed offsets")
            await asyncio.sleep(1.0)


def _setup(app: FastAPI) -> None:
    """Background loops of the usage-meter, started after the runtime and stopped before it."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as state:
            runtime: Runtime = application.state.runtime
            settings = runtime.settings
            assert isinstance(settings, Settings)
            services: UsageMeterServices = runtime.extras["usage"]
            stop = asyncio.Event()

            async def expire() -> int:
                return await services.views.expire(
                    datetime.now(UTC) - timedelta(days=settings.retention_days)
                )

            tasks = [
                asyncio.create_task(services.quotas.run(stop, settings.quota_interval_s), name="quotas"),
                asyncio.create_task(
                    periodic(stop, settings.closer_interval_s, services.closer.close_due, "day closer"),
                    name="closer",
                ),
                asyncio.create_task(
                    periodic(stop, settings.retention_interval_s, expire, "ledger retention"),
                    name="retention",
                ),
            ]
            if settings.usage_consumer_enabled:
                tasks.append(asyncio.create_task(_run_consumer(runtime, stop), name="usage-consumer"))
            # What startup built (modules, schemas, clients) lives as long as the process: keep the
            # cyclic GC from walking it on every full collection, which a 1,000-event request (or
            # consumer batch) triggers. Without this, GC is a third of the bulk API's CPU.
            gc.collect()
            gc.freeze()
            # And collect young objects after 50,000 allocations instead of 700: a batch builds
            # hundreds of thousands of objects that reference counting frees, and the default
            # thresholds ran a collection every few hundred of them (measured on the consumer's
            # decode and apply path: 30 -> 22 µs of CPU per event). Cyclic garbage waits a little
            # longer to be collected; nothing else changes.
            thresholds = gc.get_threshold()
            gc.set_threshold(50_000, 20, 20)
            try:
                yield state
            finally:
                gc.set_threshold(*thresholds)  # the process may go on (tests run the app in-process)
                gc.unfreeze()
                stop.set()
                for task in tasks:
                    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                        await asyncio.wait_for(task, 10)

    app.router.lifespan_context = lifespan


async def _indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    await mongo_store.ensure_indexes(db)
    copied = await mongo_store.migrate_legacy_ledger(db)
    if copied:
        logging.getLogger("usage_meter").info(
            "ledger payloads copied into chunks", extra={"fields": {"entries": copied}}
        )
    # Before any consumer of this version writes a sheet (this runs before the app starts).
    copied = await mongo_store.migrate_legacy_aggregates(db)
    if copied:
        logging.getLogger("usage_meter").info(
            "per-meter aggregates copied into sheets", extra={"fields": {"aggregates": copied}}
        )


SPEC = ServiceSpec(
    name="usage-meter",
    title="AI Lab Usage meter",
    description=(
        "Usage ledger (exactly-once effect), daily/monthly aggregates per tenant and meter, quotas, "
        "analytics and export. Internal: the gateway forwards `/v1/tenants/{tenant_id}/usage/...`, "
        "`/v1/tenants/{tenant_id}/analytics/dashboard` and `/v1/admin/usage/...` here with the "
        "internal token."
    ),
    routers=ROUTERS,
    consumers=CONSUMERS,
    indexes=_indexes,
    wire=_wire,
    extra_setup=_setup,
    openapi_tags=[
        {"name": "usage", "description": "Bulk usage ingestion, daily and monthly usage, analytics."},
        {"name": "admin", "description": "Platform-admin export of the usage ledger, ingestion stats."},
    ],
)
