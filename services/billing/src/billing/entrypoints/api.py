"""Billing HTTP API. `/v1/...` routes are forwarded by the gateway (after authentication, role and
tenant checks) with the internal token; `/webhooks/stripe` is public (Stripe calls it; the
signature is the authentication) and the gateway forwards it raw."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request

from ailab_runtime.errors import ApiError, ErrorResponse, not_found
from ailab_runtime.internal import Caller
from ailab_runtime.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, keyset_page
from ailab_runtime.service import Runtime

from ..adapters.mongo_billing import INVOICES
from ..adapters.recorder import StreamConflict
from ..application.accounts import AccountService
from ..application.invoices import InvoiceService, current_month, last_day
from ..application.reconcile import ReconcileService
from ..application.usage_sync import UsageSyncService
from ..application.webhooks import WebhookService
from ..domain.plans import PLANS
from ..domain.rating import text
from .schemas import (
    DAY_PATTERN,
    MONTH_PATTERN,
    BillingUsageOut,
    DayUsageOut,
    InvoiceOut,
    MeteredRateOut,
    MeterEventOut,
    PlanOut,
    PlanUpdate,
    ReconcileOut,
    StripeRefs,
    UsageCountsOut,
    UsageSyncOut,
    WebhookAck,
)

PLAN_WRITERS = ("tenant_admin", "platform_admin", "system")
ADMINS = ("platform_admin", "system")


@dataclass(frozen=True)
class BillingPorts:
    accounts: AccountService
    invoices: InvoiceService
    reconcile: ReconcileService
    webhooks: WebhookService
    usage_sync: UsageSyncService


def billing_ports(request: Request) -> BillingPorts:
    runtime: Runtime = request.app.state.runtime
    ports: BillingPorts = runtime.extras["billing"]
    return ports


Ports = Annotated[BillingPorts, Depends(billing_ports)]
TenantId = Annotated[str, Path(min_length=1, max_length=128, description="Owning tenant.", examples=["acme"])]
Month = Annotated[
    str | None,
    Query(pattern=MONTH_PATTERN, description="Billing month `YYYY-MM` (UTC); default: the current month."),
]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid internal credential"},
    403: {"model": ErrorResponse, "description": "The caller's role may not do this"},
    404: {"model": ErrorResponse, "description": "Unknown tenant or invoice"},
}

router = APIRouter(prefix="/v1/tenants/{tenant_id}/billing", tags=["billing"], responses=ERRORS)
admin = APIRouter(prefix="/v1/admin/billing", tags=["billing-admin"], responses=ERRORS)
webhooks = APIRouter(tags=["webhooks"])


def _require_role(caller: Any, allowed: tuple[str, ...]) -> None:
    if caller.role not in allowed:
        raise ApiError(
            403, "forbidden", f"role {caller.role} may not do this", {"allowed_roles": list(allowed)}
        )


async def _plan_out(ports: BillingPorts, tenant_id: str) -> PlanOut:
    account = await ports.accounts.require(tenant_id)
    plan = PLANS[account["plan"]]
    counts = await ports.accounts.counts(tenant_id)
    stripe = await ports.accounts.store.stripe_account(tenant_id) or {}
    return PlanOut(
        tenant_id=tenant_id,
        plan=account["plan"],
        plan_version=account["plan_version"],
        previous_plan=account.get("previous_plan"),
        status=account.get("status", "active"),
        base_price_usd=account["base_price_usd"],
        limits=account["limits"],
        metered_rates=[
            MeteredRateOut(
                meter=r.meter,
                billing_unit=r.billing_unit,
                unit_price_usd=text(r.unit_price_usd),
                meter_units_per_billing_unit=text(r.meter_units_per_billing_unit),
                gauge=r.gauge,
            )
            for r in plan.metered_rates
        ],
        usage=UsageCountsOut(
            users=counts.users, projects=counts.projects, storage_mb=text(counts.storage_mb)
        ),
        stripe=StripeRefs(
            customer_id=stripe.get("customer_id"),
            subscription_id=stripe.get("subscription_id"),
            subscription_status=stripe.get("subscription_status"),
        ),
        plan_changed_at=account.get("plan_changed_at"),
    )


@router.get("/plan", response_model=PlanOut, summary="The tenant's plan, limits, rates and Stripe references")
async def get_plan(tenant_id: TenantId, caller: Caller, ports: Ports) -> PlanOut:
    return await _plan_out(ports, tenant_id)


@router.put(
    "/plan",
    response_model=PlanOut,
    summary="Change the tenant's plan (tenant_admin, platform_admin)",
    description="Creates the Stripe customer and subscription of a paid plan (idempotency keys on every "
    "Stripe write) and emits `billing.PlanChanged`, which updates limits in the gateway and the "
    "usage-meter. A downgrade below the tenant's current users, projects or storage is refused with "
    "409 `plan_limits_exceeded` and one detail per exceeded limit. Choosing the current plan "
    "changes nothing.",
    responses={
        409: {
            "model": ErrorResponse,
            "description": "The tenant uses more than the new plan allows",
            "content": {
                "application/json": {
                    "example": {
                        "error": {
                            "code": "plan_limits_exceeded",
                            "message": "tenant acme uses more than the free plan allows",
                            "request_id": "5b1e",
                            "details": [{"limit": "max_users", "allowed": 3, "current": "5"}],
                        }
                    }
                }
            },
        },
        502: {
            "model": ErrorResponse,
            "description": "Stripe refused or could not be reached (`stripe_error`)",
        },
    },
)
async def put_plan(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    body: Annotated[PlanUpdate, Body(openapi_examples={"upgrade": {"value": {"plan": "pro"}}})],
) -> PlanOut:
    _require_role(caller, PLAN_WRITERS)
    await ports.accounts.change_plan(tenant_id, body.plan, caller.principal_id)
    return await _plan_out(ports, tenant_id)


@router.get(
    "/usage",
    response_model=BillingUsageOut,
    summary="The month's billed usage: closed-day totals, per-day Stripe sync status, estimated total",
)
async def get_usage(
    tenant_id: TenantId, caller: Caller, ports: Ports, month: Month = None
) -> BillingUsageOut:
    account = await ports.accounts.require(tenant_id)
    month = month or current_month()
    store = ports.accounts.store
    states = {s["day"]: s for s in await store.sync_states(tenant_id, month)}
    totals, _ = await ports.invoices.month_totals(tenant_id, month)
    sent: dict[str, list[MeterEventOut]] = {}
    for doc in await store.meter_events(tenant_id, month):
        sent.setdefault(doc["day"], []).append(
            MeterEventOut(
                identifier=doc["_id"],
                event_name=doc["event_name"],
                value=doc["value"],
                sent_at=doc["sent_at"],
            )
        )
    days = []
    for doc in await store.usage_days(tenant_id, month):
        state = states.get(doc["day"]) or {}
        days.append(
            DayUsageOut(
                day=doc["day"],
                meters={m: text(Decimal(str(t["quantity"]))) for m, t in (doc.get("meters") or {}).items()},
                stripe_sync_status=state.get("status"),
                stripe_sync_attempts=state.get("attempts", 0),
                stripe_sync_error=state.get("error"),
                meters_sent=state.get("meters") or [],
                stripe_meter_events=sent.get(doc["day"], []),
            )
        )
    preview = await ports.invoices.preview(tenant_id, month)
    return BillingUsageOut(
        tenant_id=tenant_id,
        month=month,
        plan=account["plan"],
        totals={m: text(q) for m, q in sorted(totals.items())},
        storage_level_mb=text(await store.storage_level_mb(tenant_id, last_day(month))),
        days=days,
        estimated_total_usd=preview["total_usd"],
    )


@router.get("/invoices", response_model=Page[InvoiceOut], summary="The tenant's finalized monthly invoices")
async def list_invoices(
    tenant_id: TenantId,
    caller: Caller,
    ports: Ports,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> Page[InvoiceOut]:
    await ports.accounts.require(tenant_id)
    docs, next_cursor = await keyset_page(
        ports.accounts.store.db[INVOICES], {"tenant_id": tenant_id}, cursor, limit
    )
    return Page[InvoiceOut](items=[InvoiceOut.model_validate(d) for d in docs], next_cursor=next_cursor)


@router.get(
    "/invoices/preview",
    response_model=InvoiceOut,
    summary="Invoice preview of a month (default: the current month so far)",
    description="Rated now from the month's closed days and the plan in effect: base price, one line per "
    "metered rate with its exact amount, the exact subtotal, and the total rounded once to cents.",
)
async def preview_invoice(
    tenant_id: TenantId, caller: Caller, ports: Ports, month: Month = None
) -> InvoiceOut:
    await ports.accounts.require(tenant_id)
    return InvoiceOut.model_validate(await ports.invoices.preview(tenant_id, month))


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut, summary="One finalized invoice")
async def get_invoice(
    tenant_id: TenantId,
    invoice_id: Annotated[str, Path(max_length=64, examples=["in_202611"])],
    caller: Caller,
    ports: Ports,
) -> InvoiceOut:
    doc = await ports.accounts.store.invoice(tenant_id, invoice_id)
    if doc is None:
        raise not_found("invoice", invoice_id)
    return InvoiceOut.model_validate(doc)


@admin.get(
    "/reconcile",
    response_model=ReconcileOut,
    summary="Usage-meter totals vs billing's rating vs what was sent to Stripe (platform_admin)",
)
async def reconcile(
    caller: Caller,
    ports: Ports,
    month: Annotated[str, Query(pattern=MONTH_PATTERN, description="`YYYY-MM`.", examples=["2026-11"])],
    tenant_id: Annotated[str | None, Query(description="Only this tenant.")] = None,
) -> ReconcileOut:
    _require_role(caller, ADMINS)
    return ReconcileOut.model_validate(await ports.reconcile.month(month, tenant_id))


@admin.post(
    "/usage-sync/{tenant_id}/{day}/retry",
    response_model=UsageSyncOut,
    summary="Send a closed day's usage to Stripe again, with a fresh attempt count (platform_admin)",
    responses={
        404: {"model": ErrorResponse, "description": "Billing has no sync state for that day"},
        409: {"model": ErrorResponse, "description": "Another replica is recording for that day now"},
    },
)
async def retry_usage_sync(
    tenant_id: TenantId,
    day: Annotated[
        str, Path(pattern=DAY_PATTERN, description="UTC day `YYYY-MM-DD`.", examples=["2026-11-23"])
    ],
    caller: Caller,
    ports: Ports,
) -> UsageSyncOut:
    """For a day whose automatic retries ran out (`error` after `USAGE_SYNC_MAX_ATTEMPTS`), or any day
    not synced yet: its attempt count starts again and one attempt runs now; the billing loop retries
    it with backoff after that. A synced day is returned as it is (Stripe deduplicates meter events by
    identifier anyway)."""
    _require_role(caller, ADMINS)
    try:
        state = await ports.usage_sync.retry(tenant_id, day)
    except StreamConflict as exc:
        raise ApiError(
            409, "sync_in_progress", f"the sync of {tenant_id} {day} is being recorded now"
        ) from exc
    if state is None:
        raise not_found("usage sync of day", f"{tenant_id} {day}")
    return UsageSyncOut.model_validate(state)


@webhooks.post(
    "/webhooks/stripe",
    response_model=WebhookAck,
    summary="Stripe webhook endpoint (signature-verified; each event id processed once)",
    responses={
        400: {"model": ErrorResponse, "description": "Missing, forged, tampered or expired signature"}
    },
)
async def stripe_webhook(
    request: Request,
    ports: Ports,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> WebhookAck:
    payload = await request.body()
    result = await ports.webhooks.handle(payload, stripe_signature)
    return WebhookAck(event_id=result.event_id, type=result.type, status=result.status)  # type: ignore[arg-type]


ROUTERS = (router, admin, webhooks)
