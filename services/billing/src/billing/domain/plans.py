"""The billing plans as versioned configuration (specification: BillingPlans).

Limits are the shared `ailab_contracts.plans.PLAN_LIMITS` (the gateway gives new tenants the same).
Changing a price or a rate means a new `version`: invoices and
`billing.PlanChanged` name the version they used, so an old invoice can always be re-derived.

Metered rates are per *billing unit*: the usage-meter measures storage and egress in MB, the plans
price them per GB (1 GB = 1024 MB here), so each rate says how many meter units make one billing
unit. Storage is a gauge: it is rated on the level held at the end of the period (GB-month), the
other meters on the period's sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from ailab_contracts.events.tenancy import TenantLimits
from ailab_contracts.plans import PLAN_LIMITS

PlanName = Literal["free", "pro", "enterprise"]
PLAN_ORDER: tuple[PlanName, ...] = ("free", "pro", "enterprise")
MB_PER_GB = Decimal(1024)


@dataclass(frozen=True)
class MeteredRate:
    meter: str  # usage meter (tokens_in, storage_mb, ...)
    billing_unit: str  # what the price is per (token, GB, GB-month)
    unit_price_usd: Decimal
    meter_units_per_billing_unit: Decimal = Decimal(1)
    gauge: bool = False  # rated on the level at the end of the period, not on the sum


@dataclass(frozen=True)
class PlanConfig:
    name: PlanName
    version: int
    base_price_usd: Decimal
    limits: TenantLimits
    metered_rates: tuple[MeteredRate, ...] = field(default_factory=tuple)

    @property
    def paid(self) -> bool:
        return self.base_price_usd > 0 or bool(self.metered_rates)

    def rate(self, meter: str) -> MeteredRate | None:
        return next((r for r in self.metered_rates if r.meter == meter), None)

    @property
    def billable_meters(self) -> tuple[str, ...]:
        return tuple(r.meter for r in self.metered_rates)


def _rates(tokens_in: str, tokens_out: str, storage_gb: str, egress_gb: str) -> tuple[MeteredRate, ...]:
    return (
        MeteredRate("tokens_in", "token", Decimal(tokens_in)),
        MeteredRate("tokens_out", "token", Decimal(tokens_out)),
        MeteredRate("storage_mb", "GB-month", Decimal(storage_gb), MB_PER_GB, gauge=True),
        MeteredRate("egress_mb", "GB", Decimal(egress_gb), MB_PER_GB),
    )


PLAN_CONFIG_VERSION = 1

PLANS: dict[str, PlanConfig] = {
    "free": PlanConfig(
        name="free",
        version=PLAN_CONFIG_VERSION,
        base_price_usd=Decimal(0),
        limits=PLAN_LIMITS["free"],
    ),
    "pro": PlanConfig(
        name="pro",
        version=PLAN_CONFIG_VERSION,
        base_price_usd=Decimal(29),
        limits=PLAN_LIMITS["pro"],
        metered_rates=_rates("0.000001", "0.000002", "0.10", "0.05"),
    ),
    "enterprise": PlanConfig(
        name="enterprise",
        version=PLAN_CONFIG_VERSION,
        base_price_usd=Decimal(299),
        limits=PLAN_LIMITS["enterprise"],
        metered_rates=_rates("0.0000005", "0.000001", "0.05", "0.02"),
    ),
}


def plan(name: str) -> PlanConfig:
    return PLANS[name]


@dataclass(frozen=True)
class LimitViolation:
    limit: str
    allowed: int | float
    current: str

    def as_detail(self) -> dict[str, object]:
        return {"limit": self.limit, "allowed": self.allowed, "current": self.current}


def limit_violations(
    target: PlanConfig, users: int, projects: int, storage_mb: Decimal
) -> list[LimitViolation]:
    """What keeps a tenant from moving to `target` (a downgrade below its current use)."""
    limits = target.limits
    found: list[LimitViolation] = []
    if limits.max_users != -1 and users > limits.max_users:
        found.append(LimitViolation("max_users", limits.max_users, str(users)))
    if limits.max_projects != -1 and projects > limits.max_projects:
        found.append(LimitViolation("max_projects", limits.max_projects, str(projects)))
    if limits.max_storage_gb != -1 and storage_mb > Decimal(str(limits.max_storage_gb)) * MB_PER_GB:
        found.append(
            LimitViolation("max_storage_gb", limits.max_storage_gb, format(storage_mb / MB_PER_GB, "f"))
        )
    return found
