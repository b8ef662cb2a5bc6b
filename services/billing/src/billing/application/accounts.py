"""A tenant's billing account: its plan (stream `billing-account:{tenant}`, events
`billing.PlanChanged` and `billing.AccountStatusChanged`), its Stripe customer and subscription,
and the counts a downgrade is checked against (users, projects, storage)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_contracts.events.billing import AccountStatusChanged, PlanChanged
from ailab_contracts.events.registry import ProjectCreated, ProjectDeleted
from ailab_contracts.events.tenancy import TenantCreated, UserJoined, UserRemoved
from ailab_contracts.events.usage import UsageRecorded
from ailab_runtime.counters import KeyedSerializer
from ailab_runtime.errors import ApiError, not_found

from ..adapters.mongo_billing import BillingStore
from ..adapters.recorder import RuntimeRecorder, StreamConflict
from ..adapters.stripe_api import StripeApi, StripeFailure
from ..domain.plans import PLANS, PlanConfig, limit_violations

log = logging.getLogger(__name__)


def account_stream(tenant_id: str) -> str:
    return f"billing-account:{tenant_id}"


@dataclass(frozen=True)
class StripePrices:
    price_prefix: str

    def for_plan(self, plan: PlanConfig) -> list[str]:
        """The subscription's items: the base price and one metered price per billable meter."""
        return [f"{self.price_prefix}{plan.name}_base"] + [
            f"{self.price_prefix}{plan.name}_{meter}" for meter in plan.billable_meters
        ]


@dataclass(frozen=True)
class UsageCounts:
    users: int
    projects: int
    storage_mb: Decimal


class AccountService:
    def __init__(
        self,
        store: BillingStore,
        recorder: RuntimeRecorder,
        stripe: StripeApi,
        prices: StripePrices,
        serializer: KeyedSerializer,
    ) -> None:
        self.store = store
        self._recorder = recorder
        self._stripe = stripe
        self._prices = prices
        self.serializer = serializer

    # --- events of other contexts -------------------------------------------------------------
    async def apply_external(self, envelope: EventEnvelope, event: BaseModel) -> None:
        """Tenancy, registry and usage events: the initial plan and the ledger-style counts."""
        tenant = envelope.tenant_id
        version = envelope.stream_version
        if isinstance(event, TenantCreated):
            await self.open_account(event, envelope.occurred_at)
        elif isinstance(event, UserJoined):
            await self.store.set_member(tenant, "user", event.user_id, True, version)
        elif isinstance(event, UserRemoved):
            await self.store.set_member(tenant, "user", event.user_id, False, version)
        elif isinstance(event, ProjectCreated):
            await self.store.set_member(tenant, "project", event.project_id, True, version)
        elif isinstance(event, ProjectDeleted):
            await self.store.set_member(tenant, "project", event.project_id, False, version)
        elif isinstance(event, UsageRecorded) and event.meter == "storage_mb":
            await self.store.add_storage(tenant, str(envelope.event_id), event.quantity)

    async def open_account(self, event: TenantCreated, at: datetime) -> None:
        """The tenant's initial plan (tenancy.TenantCreated): Stripe first for a paid plan, then
        `billing.PlanChanged` (previous_plan null) at stream version 1 — a redelivery is a no-op."""
        tenant = event.tenant_id
        async with self.serializer.hold(tenant):
            if await self._recorder.version(account_stream(tenant)) > 0:
                return
            target = PLANS[event.plan]
            if target.paid:
                try:
                    await self._subscribe(tenant, event.name, target)
                except StripeFailure as exc:  # the plan stands; usage sync creates the customer later
                    log.warning("stripe subscription not created", extra={"fields": {"error": str(exc)}})
            try:
                await self._recorder.record(
                    account_stream(tenant),
                    0,
                    tenant,
                    [self._plan_changed(tenant, target, None, "system", at)],
                )
            except StreamConflict:
                return

    # --- commands -----------------------------------------------------------------------------
    async def counts(self, tenant_id: str) -> UsageCounts:
        return UsageCounts(
            users=await self.store.count_members(tenant_id, "user"),
            projects=await self.store.count_members(tenant_id, "project"),
            storage_mb=await self.store.storage_mb(tenant_id),
        )

    async def require(self, tenant_id: str) -> dict[str, Any]:
        account = await self.store.account(tenant_id)
        if account is None:
            raise not_found("billing account of tenant", tenant_id)
        return account

    async def change_plan(self, tenant_id: str, plan_name: str, actor: str, *, force: bool = False) -> bool:
        """Move the tenant to `plan_name`; returns False when it is already on it.

        Refused with 409 `plan_limits_exceeded` when the tenant uses more than the new plan allows
        (unless `force`, used when Stripe itself ended the subscription)."""
        target = PLANS[plan_name]
        async with self.serializer.hold(tenant_id):
            account = await self.require(tenant_id)
            if account["plan"] == plan_name and account.get("plan_version") == target.version:
                return False
            counts = await self.counts(tenant_id)
            violations = limit_violations(target, counts.users, counts.projects, counts.storage_mb)
            if violations and not force:
                raise ApiError(
                    409,
                    "plan_limits_exceeded",
                    f"tenant {tenant_id} uses more than the {plan_name} plan allows",
                    [v.as_detail() for v in violations],
                )
            stripe_account = await self.store.stripe_account(tenant_id) or {}
            current_sub = stripe_account.get("subscription_id")
            try:
                if current_sub and stripe_account.get("subscription_status") != "canceled":
                    await self._stripe.cancel_subscription(
                        current_sub, f"ailab-cancel-{tenant_id}-{current_sub}"
                    )
                    await self.store.save_stripe_account(
                        tenant_id,
                        {
                            "subscription_id": None,
                            "subscription_status": "canceled",
                            "previous_subscription_id": current_sub,
                        },
                    )
                if target.paid:
                    await self._subscribe(tenant_id, tenant_id, target)
            except StripeFailure as exc:
                raise ApiError(502, "stripe_error", str(exc)) from exc
            version = await self._recorder.version(account_stream(tenant_id))
            event = self._plan_changed(tenant_id, target, account["plan"], actor, datetime.now(UTC))
            try:
                await self._recorder.record(account_stream(tenant_id), version, tenant_id, [event])
            except StreamConflict as exc:
                raise ApiError(409, "conflict", "the plan was changed by another request; retry") from exc
            return True

    async def set_status(self, tenant_id: str, status: str, reason: str, invoice_id: str | None) -> bool:
        """Suspend or restore the tenant (billing.AccountStatusChanged) unless it already is."""
        async with self.serializer.hold(tenant_id):
            account = await self.store.account(tenant_id)
            if account is None or account.get("status", "active") == status:
                return False
            version = await self._recorder.version(account_stream(tenant_id))
            event = AccountStatusChanged(
                tenant_id=tenant_id,
                status=status,  # type: ignore[arg-type]
                reason=reason,
                invoice_id=invoice_id,
                at=datetime.now(UTC),
            )
            await self._recorder.record(account_stream(tenant_id), version, tenant_id, [event])
            return True

    async def ensure_customer(self, tenant_id: str) -> str:
        """The tenant's Stripe customer id (created once; the key makes a retry return the same one)."""
        existing = await self.store.stripe_account(tenant_id)
        if existing and existing.get("customer_id"):
            return str(existing["customer_id"])
        customer_id = await self._stripe.create_customer(tenant_id, tenant_id, f"ailab-customer-{tenant_id}")
        await self.store.save_stripe_account(
            tenant_id, {"customer_id": customer_id, "subscriptions_created": 0}
        )
        return customer_id

    async def customer_for(self, tenant_id: str) -> str:
        async with self.serializer.hold(tenant_id):
            return await self.ensure_customer(tenant_id)

    # --- helpers ------------------------------------------------------------------------------
    async def _subscribe(self, tenant_id: str, name: str, target: PlanConfig) -> None:
        customer_id = await self.ensure_customer(tenant_id)
        account = await self.store.stripe_account(tenant_id) or {}
        seq = int(account.get("subscriptions_created") or 0) + 1
        key = f"ailab-subscription-{tenant_id}-{seq}-{target.name}-v{target.version}"
        sub = await self._stripe.create_subscription(
            tenant_id, customer_id, target.name, self._prices.for_plan(target), key
        )
        await self.store.save_stripe_account(
            tenant_id,
            {
                "subscription_id": sub["id"],
                "subscription_status": sub["status"],
                "subscription_plan": target.name,
                "subscriptions_created": seq,
            },
        )
        log.info(
            "stripe subscription created", extra={"fields": {"tenant_id": tenant_id, "plan": target.name}}
        )

    @staticmethod
    def _plan_changed(
        tenant_id: str, target: PlanConfig, previous: str | None, actor: str, at: datetime
    ) -> PlanChanged:
        return PlanChanged(
            tenant_id=tenant_id,
            plan=target.name,
            previous_plan=previous,  # type: ignore[arg-type]
            plan_version=target.version,
            limits=target.limits,
            base_price_usd=target.base_price_usd,
            changed_by=actor,
            effective_at=at,
        )
