"""The plans' limits, shared by every service (specification: BillingPlans and
InitialTenantSetup); -1 means unlimited. The gateway gives a new tenant its plan's limits; billing
prices the plans (its versioned plan configuration) and announces plan changes with these limits in
`billing.PlanChanged`."""

from __future__ import annotations

from .events.tenancy import TenantLimits

PLAN_LIMITS: dict[str, TenantLimits] = {
    "free": TenantLimits(
        max_users=3,
        max_projects=3,
        max_requests_per_month=1000,
        max_tokens_per_month=100000,
        max_storage_gb=1,
        enabled_features=["agents"],
    ),
    "pro": TenantLimits(
        max_users=10,
        max_projects=50,
        max_requests_per_month=50000,
        max_tokens_per_month=2000000,
        max_storage_gb=10,
        enabled_features=["agents", "experiments", "monitoring", "linting"],
    ),
    "enterprise": TenantLimits(
        max_users=-1,
        max_projects=-1,
        max_requests_per_month=-1,
        max_tokens_per_month=-1,
        max_storage_gb=100,
        enabled_features=["all"],
    ),
}
