"""Wires the billing service: plans and Stripe subscriptions, usage sync to Stripe Billing Meters,
invoices, Stripe webhooks and reconciliation; the `accounts` and `usage_sync` projections; the
tenancy/registry/usage consumers; and the billing loop (sync retries, grace-period suspensions,
monthly invoices), started and stopped with the HTTP app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.counters import KeyedSerializer
from ailab_runtime.service import Runtime, ServiceSpec

from .adapters import mongo_billing
from .adapters.mongo_billing import BillingStore
from .adapters.projections import AccountsProjection, SyncProjection
from .adapters.recorder import RuntimeRecorder
from .adapters.stripe_api import StripeApi
from .adapters.usage_meter_http import UsageMeterHttp
from .application.accounts import AccountService, StripePrices
from .application.invoices import InvoiceService
from .application.loops import BillingLoop
from .application.reconcile import ReconcileService
from .application.usage_sync import SyncSettings, UsageSyncService
from .application.webhooks import WebhookService
from .config import Settings
from .entrypoints.api import ROUTERS, BillingPorts
from .entrypoints.consumers import CONSUMERS


def _settings(runtime: Runtime) -> Settings:
    settings = runtime.settings
    assert isinstance(settings, Settings), "billing needs its own Settings"
    return settings


def _wire(runtime: Runtime) -> None:
    settings = _settings(runtime)
    store = BillingStore(runtime.db)
    recorder = RuntimeRecorder(runtime)
    stripe = StripeApi(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_timeout_s)
    accounts = AccountService(
        store, recorder, stripe, StripePrices(settings.stripe_price_prefix), KeyedSerializer()
    )
    sync = UsageSyncService(
        store,
        recorder,
        stripe,
        accounts,
        SyncSettings(
            settings.stripe_meter_event_prefix,
            settings.usage_sync_max_attempts,
            settings.usage_sync_backoff_s,
            settings.usage_sync_backoff_max_s,
        ),
    )
    invoices = InvoiceService(store, recorder, settings.invoice_close_delay_s)
    webhooks = WebhookService(
        store,
        accounts,
        settings.stripe_webhook_secret,
        settings.stripe_webhook_tolerance_s,
        settings.billing_grace_period_s,
    )
    usage_meter = UsageMeterHttp(settings.usage_meter_url, settings.internal_token)
    runtime.extras["accounts"] = accounts
    runtime.extras["usage_sync"] = sync
    runtime.extras["billing"] = BillingPorts(
        accounts=accounts,
        invoices=invoices,
        reconcile=ReconcileService(store, invoices, usage_meter),
        webhooks=webhooks,
        usage_sync=sync,
    )
    runtime.extras["billing_loop"] = BillingLoop(sync, webhooks, invoices, settings.billing_loop_interval_s)
    runtime.closers.append(usage_meter.aclose)


def _setup(app: FastAPI) -> None:
    """The billing loop starts after the runtime (database ready) and stops before it."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as state:
            loop: BillingLoop = application.state.runtime.extras["billing_loop"]
            loop.start()
            try:
                yield state
            finally:
                await loop.stop()

    app.router.lifespan_context = lifespan


def _projections(db: AsyncDatabase[dict[str, Any]]) -> list[Any]:
    return [AccountsProjection(db), SyncProjection(db)]


SPEC = ServiceSpec(
    name="billing",
    title="AI Lab Billing",
    description=(
        "Plans and Stripe subscriptions, closed usage days sent to Stripe Billing Meters, invoices rated "
        "in exact decimals, Stripe webhooks and reconciliation. Internal: the gateway forwards "
        "`/v1/tenants/{tenant_id}/billing/...` and `/v1/admin/billing/...` with the internal token, and "
        "`POST /webhooks/stripe` raw."
    ),
    routers=ROUTERS,
    projections=_projections,
    consumers=CONSUMERS,
    indexes=mongo_billing.ensure_indexes,
    wire=_wire,
    extra_setup=_setup,
    openapi_tags=[
        {"name": "billing", "description": "Plan, billed usage, invoices and invoice preview of a tenant."},
        {"name": "billing-admin", "description": "Reconciliation across tenants (platform_admin)."},
        {"name": "webhooks", "description": "Stripe webhooks (signature-verified)."},
    ],
)
