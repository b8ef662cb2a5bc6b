"""Plugs the dataset adapters into the use cases and describes the feature to `bootstrap.py`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.service import Runtime

from ..adapters.runtime_recorder import RuntimeEventRecorder
from ..features import Feature
from .api import TAG, router
from .cleanup import EventStoreUploads, Sweeper
from .plans import TENANT_PLANS_CONSUMER, TenantPlans
from .ports import DatasetPorts
from .storage import DatasetFileStore, ensure_storage_indexes
from .views import DatasetViews, ensure_view_indexes, projections


def build_ports(runtime: Runtime) -> DatasetPorts:
    return DatasetPorts(
        views=DatasetViews(runtime.db),
        recorder=RuntimeEventRecorder(runtime),
        files=DatasetFileStore(runtime.db),
        plans=TenantPlans(runtime.db),
    )


def _setup(app: FastAPI) -> None:
    app.state.dataset_ports = build_ports(app.state.runtime)


async def _indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    await ensure_view_indexes(db)
    await ensure_storage_indexes(db)


async def _start_sweeper(runtime: Runtime) -> None:
    """Runs at start-up (after the runtime started): the periodic sweep of orphaned uploads lives
    as long as the runtime does. (In `migrate`, the process ends before its first run.)"""
    sweeper = Sweeper(DatasetFileStore(runtime.db), EventStoreUploads(runtime.store, runtime.registry))
    sweeper.start()
    runtime.closers.append(sweeper.stop)


FEATURE = Feature(
    name="datasets",
    routers=(router,),
    projections=projections,
    indexes=_indexes,
    consumers=(TENANT_PLANS_CONSUMER,),
    migrations=_start_sweeper,
    setup=_setup,
    openapi_tags=(
        {
            "name": TAG,
            "description": "Datasets: JSONL or CSV files uploaded and downloaded as streams, with an "
            "inferred schema (`schema.json`) and their rows as numbered examples. Upload size limits: "
            "free 10 MB, pro 100 MB, enterprise 1 GB.",
        },
    ),
)
