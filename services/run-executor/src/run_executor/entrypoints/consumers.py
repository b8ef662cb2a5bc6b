"""Kafka consumers of the run executor: its views of registry and tenancy data."""

from __future__ import annotations

from ailab_contracts.topics import REGISTRY, TENANCY
from ailab_runtime.consumer import Handler
from ailab_runtime.service import ConsumerSpec, Runtime

from ..adapters.registry_views import REGISTRY_EVENT_TYPES, TENANCY_EVENT_TYPES, RegistryViews

REGISTRY_GROUP = "run-executor.registry-views"
TENANCY_GROUP = "run-executor.tenant-plans"


def _views(runtime: Runtime) -> Handler:
    views: RegistryViews = runtime.extras["registry_views"]
    return views.apply


CONSUMERS = (
    ConsumerSpec(
        topics=[REGISTRY], group=REGISTRY_GROUP, handler_factory=_views, event_types=set(REGISTRY_EVENT_TYPES)
    ),
    ConsumerSpec(
        topics=[TENANCY], group=TENANCY_GROUP, handler_factory=_views, event_types=set(TENANCY_EVENT_TYPES)
    ),
)
