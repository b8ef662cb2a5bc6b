"""The billing service's own MongoDB collections (every document carries `tenant_id`).

Written only in FerretDB-safe ways: insert-only ledgers (`_id` = deterministic key, duplicate key =
already applied), version-guarded view updates, and documents with one writer per tenant (the
application holds a per-tenant `KeyedSerializer` around Stripe/account writes).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_runtime.views import apply_versioned

ACCOUNTS = "accounts"  # projection of billing-account:{tenant}
SYNC = "usage_sync"  # projection of usage-sync:{tenant}:{day}
STRIPE_ACCOUNTS = "stripe_accounts"
MEMBERS = "members"
STORAGE_LEDGER = "storage_ledger"
USAGE_DAYS = "usage_days"
METER_EVENTS_SENT = "stripe_meter_events"
PAYMENT_FAILURES = "payment_failures"
WEBHOOK_EVENTS = "stripe_webhook_events"
INVOICES = "invoices"


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    await db[ACCOUNTS].create_index("tenant_id")
    await db[SYNC].create_index([("status", 1), ("at", 1)])
    await db[SYNC].create_index([("tenant_id", 1), ("month", 1)])
    await db[STRIPE_ACCOUNTS].create_index("customer_id")
    await db[STRIPE_ACCOUNTS].create_index("subscription_id")
    await db[MEMBERS].create_index([("tenant_id", 1), ("kind", 1), ("active", 1)])
    await db[STORAGE_LEDGER].create_index("tenant_id")
    await db[USAGE_DAYS].create_index([("tenant_id", 1), ("day", 1)])
    await db[METER_EVENTS_SENT].create_index([("tenant_id", 1), ("month", 1)])
    await db[PAYMENT_FAILURES].create_index([("resolved", 1), ("suspend_at", 1)])
    await db[PAYMENT_FAILURES].create_index("tenant_id")
    await db[WEBHOOK_EVENTS].create_index("tenant_id")
    await db[INVOICES].create_index([("tenant_id", 1), ("invoice_id", 1)])


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


class BillingStore:
    """Queries and FerretDB-safe writes over the collections above."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    # --- accounts (read model) ---------------------------------------------------------------
    async def account(self, tenant_id: str) -> dict[str, Any] | None:
        return await self.db[ACCOUNTS].find_one({"_id": tenant_id, "tenant_id": tenant_id})

    async def accounts(self) -> list[dict[str, Any]]:
        return [d async for d in self.db[ACCOUNTS].find({}).sort("_id", 1)]

    # --- Stripe customer and subscription of each tenant -------------------------------------
    async def stripe_account(self, tenant_id: str) -> dict[str, Any] | None:
        return await self.db[STRIPE_ACCOUNTS].find_one({"_id": tenant_id, "tenant_id": tenant_id})

    async def stripe_account_by(self, field: str, value: str) -> dict[str, Any] | None:
        return await self.db[STRIPE_ACCOUNTS].find_one({field: value})

    async def save_stripe_account(self, tenant_id: str, fields: dict[str, Any]) -> None:
        """Single writer per tenant (the caller holds the tenant's serializer)."""
        await self.db[STRIPE_ACCOUNTS].update_one(
            {"_id": tenant_id}, {"$set": {**fields, "tenant_id": tenant_id}}, upsert=True
        )

    # --- users, projects, storage: what a downgrade is checked against ------------------------
    async def set_member(self, tenant_id: str, kind: str, ident: str, active: bool, version: int) -> None:
        await apply_versioned(
            self.db[MEMBERS],
            f"{tenant_id}:{kind}:{ident}",
            version,
            {"active": active},
            on_insert={"tenant_id": tenant_id, "kind": kind, "ident": ident},
        )

    async def count_members(self, tenant_id: str, kind: str) -> int:
        return await self.db[MEMBERS].count_documents({"tenant_id": tenant_id, "kind": kind, "active": True})

    async def add_storage(self, tenant_id: str, event_id: str, amount: Decimal) -> None:
        try:
            await self.db[STORAGE_LEDGER].insert_one(
                {"_id": event_id, "tenant_id": tenant_id, "amount": format(amount, "f")}
            )
        except DuplicateKeyError:
            pass

    async def storage_mb(self, tenant_id: str) -> Decimal:
        total = Decimal(0)
        async for doc in self.db[STORAGE_LEDGER].find({"tenant_id": tenant_id}, {"amount": 1}):
            total += _dec(doc["amount"])
        return total

    # --- closed days (what billing charges) --------------------------------------------------
    async def insert_usage_day(self, doc: dict[str, Any]) -> bool:
        try:
            await self.db[USAGE_DAYS].insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    async def usage_day(self, tenant_id: str, day: str) -> dict[str, Any] | None:
        return await self.db[USAGE_DAYS].find_one({"_id": f"{tenant_id}:{day}", "tenant_id": tenant_id})

    async def usage_days(self, tenant_id: str, month: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"tenant_id": tenant_id}
        if month:
            query["month"] = month
        return [d async for d in self.db[USAGE_DAYS].find(query).sort("day", 1)]

    async def usage_months(self, tenant_id: str) -> set[str]:
        return {d["month"] async for d in self.db[USAGE_DAYS].find({"tenant_id": tenant_id}, {"month": 1})}

    async def storage_level_mb(self, tenant_id: str, through_day: str) -> Decimal:
        """Storage held at the end of `through_day`: every closed day's storage delta up to it."""
        total = Decimal(0)
        query = {"tenant_id": tenant_id, "day": {"$lte": through_day}}
        async for doc in self.db[USAGE_DAYS].find(query, {"meters": 1}):
            storage = (doc.get("meters") or {}).get("storage_mb")
            if storage:
                total += _dec(storage["quantity"])
        return total

    # --- sync status (read model) and what was sent to Stripe --------------------------------
    async def sync_state(self, tenant_id: str, day: str) -> dict[str, Any] | None:
        return await self.db[SYNC].find_one({"_id": f"{tenant_id}:{day}", "tenant_id": tenant_id})

    async def sync_states(self, tenant_id: str, month: str) -> list[dict[str, Any]]:
        return [d async for d in self.db[SYNC].find({"tenant_id": tenant_id, "month": month}).sort("day", 1)]

    async def unsynced(self, max_attempts: int, limit: int = 500) -> list[dict[str, Any]]:
        """Days not synced yet that may be retried (the caller applies the backoff)."""
        query = {"status": {"$in": ["pending", "error"]}, "attempts": {"$lt": max_attempts}}
        return [d async for d in self.db[SYNC].find(query).sort("at", 1).limit(limit)]

    async def meter_event_sent(self, identifier: str) -> dict[str, Any] | None:
        return await self.db[METER_EVENTS_SENT].find_one({"_id": identifier})

    async def record_meter_event(self, doc: dict[str, Any]) -> None:
        try:
            await self.db[METER_EVENTS_SENT].insert_one(doc)
        except DuplicateKeyError:
            pass  # sent before (a retry after a crash): Stripe deduplicated it by identifier

    async def meter_events(self, tenant_id: str, month: str) -> list[dict[str, Any]]:
        query = {"tenant_id": tenant_id, "month": month}
        return [d async for d in self.db[METER_EVENTS_SENT].find(query).sort("_id", 1)]

    # --- webhooks and payment failures --------------------------------------------------------
    async def webhook_seen(self, event_id: str) -> bool:
        return await self.db[WEBHOOK_EVENTS].find_one({"_id": event_id}, {"_id": 1}) is not None

    async def mark_webhook(self, event_id: str, doc: dict[str, Any]) -> bool:
        try:
            await self.db[WEBHOOK_EVENTS].insert_one({"_id": event_id, **doc})
            return True
        except DuplicateKeyError:
            return False

    async def add_payment_failure(self, doc: dict[str, Any]) -> None:
        try:
            await self.db[PAYMENT_FAILURES].insert_one(doc)
        except DuplicateKeyError:
            pass

    async def resolve_payment_failures(self, tenant_id: str, at: datetime) -> None:
        await self.db[PAYMENT_FAILURES].update_many(
            {"tenant_id": tenant_id, "resolved": False}, {"$set": {"resolved": True, "resolved_at": at}}
        )

    async def due_suspensions(self, now: datetime) -> list[dict[str, Any]]:
        query = {"resolved": False, "suspend_at": {"$lte": now}}
        return [d async for d in self.db[PAYMENT_FAILURES].find(query).limit(100)]

    # --- invoices -----------------------------------------------------------------------------
    async def insert_invoice(self, doc: dict[str, Any]) -> bool:
        try:
            await self.db[INVOICES].insert_one(doc)
            return True
        except DuplicateKeyError:
            return False

    async def invoice(self, tenant_id: str, invoice_id: str) -> dict[str, Any] | None:
        return await self.db[INVOICES].find_one({"tenant_id": tenant_id, "invoice_id": invoice_id})

    async def invoice_for(self, tenant_id: str, month: str) -> dict[str, Any] | None:
        return await self.db[INVOICES].find_one({"_id": f"{tenant_id}:{month}", "tenant_id": tenant_id})
