"""Events of billing (published by the billing service on `ailab.billing.events`).

The gateway applies `billing.PlanChanged` (the tenant's plan and limits, re-published as
`tenancy.TenantUpdated`) and `billing.AccountStatusChanged` (suspend / restore a tenant); the
usage-meter applies `billing.UsageSyncStatusChanged` to its daily aggregates' `stripe_sync_status`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .tenancy import Plan, TenantLimits
from .usage import ExactDecimal, UsageMeter

SyncStatus = Literal["pending", "synced", "error"]
AccountStatus = Literal["active", "suspended"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanChanged(_Event):
    """A tenant moved to another plan (or its plan configuration version changed)."""

    tenant_id: str = Field(min_length=1, examples=["acme"])
    plan: Plan = Field(examples=["pro"])
    previous_plan: Plan | None = Field(examples=["free"])
    plan_version: int = Field(ge=1, description="Version of the plan configuration applied.", examples=[1])
    limits: TenantLimits
    base_price_usd: ExactDecimal = Field(examples=["29"])
    changed_by: str = Field(min_length=1, description="User id, or `system`.", examples=["usr_8f2c"])
    effective_at: AwareDatetime


class UsageSyncStatusChanged(_Event):
    """Billing's progress sending one closed day of a tenant to Stripe."""

    tenant_id: str = Field(min_length=1, examples=["acme"])
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["2026-11-26"])
    status: SyncStatus = Field(examples=["synced"])
    meters: list[UsageMeter] = Field(default_factory=list, description="Meters sent to Stripe.")
    error: str | None = Field(default=None, description="Why the last attempt failed (status `error`).")
    attempts: int = Field(ge=0, examples=[1])
    at: AwareDatetime


class AccountStatusChanged(_Event):
    """Billing suspends a tenant (payment failed past the grace period) or restores it (paid)."""

    tenant_id: str = Field(min_length=1, examples=["acme"])
    status: AccountStatus = Field(examples=["suspended"])
    reason: str = Field(min_length=1, examples=["invoice.payment_failed"])
    invoice_id: str | None = Field(default=None, examples=["in_1PqR"])
    at: AwareDatetime


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("billing.PlanChanged", 1, PlanChanged),
    ("billing.UsageSyncStatusChanged", 1, UsageSyncStatusChanged),
    ("billing.AccountStatusChanged", 1, AccountStatusChanged),
]

UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
