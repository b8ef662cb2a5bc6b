"""Kafka consumers of billing: tenancy and registry (initial plan, users, projects), usage
(storage deltas; closed days to Stripe)."""

from __future__ import annotations

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_contracts.events.usage import DailyUsageClosed
from ailab_contracts.topics import REGISTRY, TENANCY, USAGE
from ailab_runtime.consumer import Handler
from ailab_runtime.service import ConsumerSpec, Runtime

from ..application.accounts import AccountService
from ..application.usage_sync import UsageSyncService

ACCOUNTS_GROUP = "billing.accounts"
USAGE_GROUP = "billing.usage"

ACCOUNT_EVENT_TYPES = {
    "tenancy.TenantCreated",
    "tenancy.UserJoined",
    "tenancy.UserRemoved",
    "registry.ProjectCreated",
    "registry.ProjectDeleted",
}
USAGE_EVENT_TYPES = {"usage.UsageRecorded", "usage.DailyUsageClosed"}


def _accounts(runtime: Runtime) -> Handler:
    service: AccountService = runtime.extras["accounts"]
    return service.apply_external


def _usage(runtime: Runtime) -> Handler:
    accounts: AccountService = runtime.extras["accounts"]
    sync: UsageSyncService = runtime.extras["usage_sync"]

    async def handle(envelope: EventEnvelope, event: BaseModel) -> None:
        if isinstance(event, DailyUsageClosed):
            await sync.on_day_closed(envelope, event)
        else:
            await accounts.apply_external(envelope, event)

    return handle


CONSUMERS = (
    ConsumerSpec(
        topics=[TENANCY, REGISTRY],
        group=ACCOUNTS_GROUP,
        handler_factory=_accounts,
        event_types=ACCOUNT_EVENT_TYPES,
    ),
    ConsumerSpec(topics=[USAGE], group=USAGE_GROUP, handler_factory=_usage, event_types=USAGE_EVENT_TYPES),
)
