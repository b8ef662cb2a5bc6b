"""Stripe webhooks: the signature is verified (HMAC-SHA256 over `t.payload`, within a tolerance
window) before anything is read; each Stripe event id is processed once; the handlers move the
tenant's account (suspend after the grace period, restore on payment) and follow its subscription."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from ailab_runtime.counters import KeyedSerializer
from ailab_runtime.errors import ApiError

from ..adapters.mongo_billing import BillingStore
from .accounts import AccountService

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1_000_000  # Stripe events are a few KB

HANDLED = (
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)


@dataclass(frozen=True)
class WebhookResult:
    event_id: str
    type: str
    status: str  # processed | duplicate | ignored
    tenant_id: str | None = None


class WebhookService:
    def __init__(
        self, store: BillingStore, accounts: AccountService, secret: str, tolerance_s: int, grace_s: float
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._secret = secret
        self._tolerance = tolerance_s
        self._grace = timedelta(seconds=grace_s)
        self._serializer = KeyedSerializer()

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, if `Stripe-Signature` signs exactly these bytes recently enough; else 400."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ApiError(413, "payload_too_large", f"webhook body is over {MAX_PAYLOAD_BYTES} bytes")
        if not signature:
            raise ApiError(400, "invalid_signature", "missing Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self._secret, tolerance=self._tolerance
            )
        except stripe.SignatureVerificationError as exc:
            raise ApiError(
                400, "invalid_signature", f"webhook signature rejected: {exc.user_message or exc}"
            ) from exc
        except ValueError as exc:
            raise ApiError(400, "invalid_payload", "webhook body is not a Stripe event") from exc
        data: dict[str, Any] = event.to_dict()
        if not data.get("id") or not data.get("type"):
            raise ApiError(400, "invalid_payload", "webhook event has no id or type")
        return data

    async def handle(self, payload: bytes, signature: str | None) -> WebhookResult:
        event = self.verify(payload, signature)
        event_id, kind = str(event["id"]), str(event["type"])
        async with self._serializer.hold(event_id):
            if await self._store.webhook_seen(event_id):
                return WebhookResult(event_id, kind, "duplicate")
            obj: dict[str, Any] = (event.get("data") or {}).get("object") or {}
            tenant_id = await self._tenant_of(obj) if kind in HANDLED else None
            status = "ignored"
            if tenant_id is not None and await self._store.account(tenant_id) is not None:
                await self._dispatch(kind, tenant_id, obj)
                status = "processed"
            await self._store.mark_webhook(
                event_id,
                {"type": kind, "tenant_id": tenant_id, "status": status, "received_at": datetime.now(UTC)},
            )
            return WebhookResult(event_id, kind, status, tenant_id)

    async def _tenant_of(self, obj: dict[str, Any]) -> str | None:
        customer = obj.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        if isinstance(customer, str):
            account = await self._store.stripe_account_by("customer_id", customer)
            if account:
                return str(account["tenant_id"])
        if obj.get("object") == "subscription" and isinstance(obj.get("id"), str):
            account = await self._store.stripe_account_by("subscription_id", obj["id"])
            if account:
                return str(account["tenant_id"])
        metadata = obj.get("metadata") or {}
        tenant = metadata.get("tenant_id")
        if not tenant:
            details = (obj.get("parent") or {}).get("subscription_details") or {}
            tenant = (details.get("metadata") or {}).get("tenant_id")
        return str(tenant) if tenant else None

    async def _dispatch(self, kind: str, tenant_id: str, obj: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        invoice_id = obj.get("id") if obj.get("object", "invoice") == "invoice" else None
        if kind == "invoice.payment_failed":
            await self._store.add_payment_failure(
                {
                    "_id": f"{tenant_id}:{invoice_id}",
                    "tenant_id": tenant_id,
                    "invoice_id": invoice_id,
                    "failed_at": now,
                    "suspend_at": now + self._grace,
                    "resolved": False,
                }
            )
            if self._grace.total_seconds() == 0:
                await self.suspend_due()
        elif kind == "invoice.paid":
            await self._store.resolve_payment_failures(tenant_id, now)
            await self._accounts.set_status(tenant_id, "active", "invoice.paid", invoice_id)
        elif kind == "customer.subscription.updated":
            await self._follow_subscription(tenant_id, obj)
        elif kind == "customer.subscription.deleted":
            current = await self._follow_subscription(tenant_id, obj)
            if current:
                # Stripe ended the subscription the tenant is on: it falls back to the free plan.
                await self._accounts.change_plan(tenant_id, "free", "stripe", force=True)

    async def _follow_subscription(self, tenant_id: str, obj: dict[str, Any]) -> bool:
        """Keep the subscription's status; True when it is the tenant's current subscription."""
        async with self._accounts.serializer.hold(tenant_id):
            account = await self._store.stripe_account(tenant_id) or {}
            if account.get("subscription_id") != obj.get("id"):
                return False
            await self._store.save_stripe_account(tenant_id, {"subscription_status": obj.get("status")})
            return True

    async def suspend_due(self) -> int:
        """Suspend tenants whose payment failure outlived the grace period without a payment."""
        count = 0
        for failure in await self._store.due_suspensions(datetime.now(UTC)):
            if await self._accounts.set_status(
                failure["tenant_id"], "suspended", "invoice.payment_failed", failure.get("invoice_id")
            ):
                count += 1
        return count
