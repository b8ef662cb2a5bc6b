"""Idempotent data migrations of the gateway (specification: InitialTenantSetup)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pymongo.errors import DuplicateKeyError

from ailab_contracts.events.tenancy import TenantLimits
from ailab_contracts.plans import PLAN_LIMITS
from ailab_runtime.errors import ApiError
from ailab_runtime.service import Runtime

log = logging.getLogger(__name__)

SYSTEM_LIMITS = TenantLimits(
    max_users=-1,
    max_projects=-1,
    max_requests_per_month=-1,
    max_tokens_per_month=-1,
    max_storage_gb=1000,
    enabled_features=["all"],
)
DEMO_LIMITS = PLAN_LIMITS["pro"]


async def initial_tenant_setup(runtime: Runtime) -> None:
    """001: the `system` tenant with a platform admin, and the `demo` tenant with a tenant admin."""
    tenancy = runtime.extras["tenancy"]
    settings = runtime.settings
    migrations = runtime.db["migrations"]
    if await migrations.find_one({"_id": "001-initial-tenant-setup"}):
        return
    for tenant_id, name, plan, limits in (
        ("system", "System Administration", "enterprise", SYSTEM_LIMITS),
        ("demo", "Demo Organization", "pro", DEMO_LIMITS),
    ):
        if await tenancy.get_tenant(tenant_id) is None:
            try:
                await tenancy.create_tenant(
                    tenant_id=tenant_id,
                    name=name,
                    domain=None,
                    plan=plan,
                    limits=limits,
                    status="active",
                    actor="migration:001",
                )
            except ApiError as exc:
                if exc.status != 409:
                    raise
    for tenant_id, email, role, password in (
        ("system", settings.platform_admin_email, "platform_admin", settings.platform_admin_password),
        ("demo", settings.demo_admin_email, "tenant_admin", settings.demo_admin_password),
    ):
        if await tenancy.credentials.find_one({"_id": email.lower()}) is None:
            try:
                await tenancy.create_active_user(tenant_id, email, role, password, actor="migration:001")
            except ApiError as exc:
                if exc.status != 409:
                    raise
    try:
        await migrations.insert_one({"_id": "001-initial-tenant-setup", "applied_at": datetime.now(UTC)})
    except DuplicateKeyError:
        pass
    log.info("migration 001-initial-tenant-setup applied")
