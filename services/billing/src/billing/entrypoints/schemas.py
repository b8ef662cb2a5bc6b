"""Request and response schemas of the billing API (decimals travel as exact strings)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ailab_contracts.events.billing import SyncStatus
from ailab_contracts.events.tenancy import TenantLimits

Money = str
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
DAY_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


class MeteredRateOut(BaseModel):
    meter: str = Field(examples=["tokens_in"])
    billing_unit: str = Field(examples=["token"])
    unit_price_usd: Money = Field(examples=["0.000001"])
    meter_units_per_billing_unit: str = Field(examples=["1"])
    gauge: bool = Field(description="Rated on the level at the end of the period (storage).")


class UsageCountsOut(BaseModel):
    users: int
    projects: int
    storage_mb: str


class StripeRefs(BaseModel):
    customer_id: str | None = None
    subscription_id: str | None = None
    subscription_status: str | None = None


class PlanOut(BaseModel):
    tenant_id: str = Field(examples=["acme"])
    plan: Literal["free", "pro", "enterprise"] = Field(examples=["pro"])
    plan_version: int = Field(examples=[1])
    previous_plan: str | None = None
    status: Literal["active", "suspended"] = Field(examples=["active"])
    base_price_usd: Money = Field(examples=["29"])
    limits: TenantLimits
    metered_rates: list[MeteredRateOut]
    usage: UsageCountsOut
    stripe: StripeRefs
    plan_changed_at: datetime | None = None


class PlanUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Literal["free", "pro", "enterprise"] = Field(examples=["enterprise"])


class InvoiceLineOut(BaseModel):
    kind: Literal["base", "metered"]
    description: str = Field(examples=["tokens_in per token"])
    meter: str | None = Field(examples=["tokens_in"])
    quantity: str = Field(description="In the meter's unit.", examples=["125000"])
    billing_quantity: str = Field(description="In the rate's unit (GB for *_mb meters).", examples=["125000"])
    unit: str = Field(examples=["token"])
    unit_price_usd: Money = Field(examples=["0.000001"])
    amount_usd: Money = Field(description="Exact, unrounded.", examples=["0.125"])


class InvoiceOut(BaseModel):
    invoice_id: str = Field(examples=["in_202611"])
    tenant_id: str
    status: Literal["preview", "finalized"]
    period: str = Field(examples=["2026-11"])
    period_start: datetime
    period_end: datetime
    plan: str
    plan_version: int
    currency: str = "usd"
    lines: list[InvoiceLineOut]
    subtotal_usd: Money = Field(description="Exact sum of the lines.", examples=["29.205"])
    rounding_adjustment_usd: Money = Field(examples=["0.005"])
    total_usd: Money = Field(description="Subtotal rounded once, half up, to cents.", examples=["29.21"])
    days_included: list[str]
    computed_at: datetime


class MeterEventOut(BaseModel):
    identifier: str = Field(
        description="`{tenant}:{day}:{meter}`: Stripe deduplicates on it.",
        examples=["acme:2026-11-26:tokens_in"],
    )
    event_name: str = Field(examples=["ailab_tokens_in"])
    value: str = Field(
        description="Value sent (storage: the level at the end of the day).", examples=["125000"]
    )
    sent_at: datetime


class DayUsageOut(BaseModel):
    day: str = Field(examples=["2026-11-26"])
    meters: dict[str, str] = Field(description="Quantity per meter.", examples=[{"tokens_in": "125000"}])
    stripe_sync_status: SyncStatus | None = None
    stripe_sync_attempts: int = 0
    stripe_sync_error: str | None = None
    meters_sent: list[str] = Field(default_factory=list)
    stripe_meter_events: list[MeterEventOut] = Field(
        default_factory=list, description="What billing sent to Stripe for this day (its own record)."
    )


class BillingUsageOut(BaseModel):
    tenant_id: str
    month: str
    plan: str
    totals: dict[str, str] = Field(description="The month's closed-day totals per meter.")
    storage_level_mb: str = Field(description="Storage held at the end of the last day of the month.")
    days: list[DayUsageOut]
    estimated_total_usd: Money = Field(description="Total of the month's invoice preview.")


class ReconcileMeterOut(BaseModel):
    meter: str
    usage_meter: str | None = Field(description="The usage-meter's monthly total (null when unreachable).")
    rated: str = Field(description="Sum of the closed days billing received and rates.")
    expected_in_stripe: str = Field(description="Quantities of the meters each synced day sent.")
    sent_to_stripe: str = Field(description="Quantities of the meter events billing recorded as sent.")


class UsageSyncOut(BaseModel):
    """Where sending one closed day's usage to Stripe stands."""

    tenant_id: str
    day: str = Field(examples=["2026-11-23"])
    status: SyncStatus
    attempts: int = Field(description="Attempts since the count last started (at close, or a retry).")
    meters: list[str] = Field(description="Meters sent to Stripe (once synced).")
    error: str | None = Field(default=None, description="Why the last attempt failed.")


class ReconcileTenantOut(BaseModel):
    tenant_id: str
    invoice_id: str | None = Field(default=None, description="The month's finalized invoice, if any.")
    days_closed: int
    days_synced: int
    meters: list[ReconcileMeterOut]
    differences: list[dict[str, object]]
    usage_meter_error: str | None = None


class ReconcileOut(BaseModel):
    month: str
    tenants: list[ReconcileTenantOut]
    differences: list[dict[str, object]] = Field(description="Every difference of every tenant.")
    difference_count: int = Field(examples=[0])


class WebhookAck(BaseModel):
    received: bool = True
    event_id: str
    type: str
    status: Literal["processed", "duplicate", "ignored"]
