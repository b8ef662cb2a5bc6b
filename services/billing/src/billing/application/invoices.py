"""Invoices from our own rating (authoritative): a month's closed days × the plan's rates.

The plan rated is the one in effect at the end of the period (for a preview: now), read from the
tenant's `billing-account` stream, so an invoice can be re-derived from events at any time. A month
is invoiced once (`invoice_id` = `in_<tenant-local sequence by month>`: `in_YYYYMM`), when
`INVOICE_CLOSE_DELAY_S` has passed after it ended; the preview rates the current month so far.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ailab_contracts.events.billing import PlanChanged

from ..adapters.mongo_billing import BillingStore
from ..adapters.recorder import RuntimeRecorder
from ..domain.plans import PLANS, PlanConfig
from ..domain.rating import RatedInvoice, rate_period, text
from .accounts import account_stream


def month_bounds(month: str) -> tuple[datetime, datetime]:
    year, mon = int(month[:4]), int(month[5:7])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = start + timedelta(days=calendar.monthrange(year, mon)[1])
    return start, end


def last_day(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{month}-{calendar.monthrange(year, mon)[1]:02d}"


def invoice_id_of(month: str) -> str:
    return f"in_{month.replace('-', '')}"


def current_month(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def _months_between(first: str, last: str) -> list[str]:
    months, (y, m) = [], (int(first[:4]), int(first[5:7]))
    while f"{y:04d}-{m:02d}" <= last:
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return months


def invoice_document(
    tenant_id: str, rated: RatedInvoice, status: str, days: list[str], now: datetime
) -> dict[str, Any]:
    start, end = month_bounds(rated.period)
    return {
        "invoice_id": invoice_id_of(rated.period) if status != "preview" else "preview",
        "tenant_id": tenant_id,
        "status": status,
        "period": rated.period,
        "period_start": start,
        "period_end": end,
        "plan": rated.plan,
        "plan_version": rated.plan_version,
        "currency": "usd",
        "lines": [
            {
                "kind": line.kind,
                "description": line.description,
                "meter": line.meter,
                "quantity": text(line.quantity),
                "billing_quantity": text(line.billing_quantity),
                "unit": line.unit,
                "unit_price_usd": text(line.unit_price_usd),
                "amount_usd": text(line.amount_usd),
            }
            for line in rated.lines
        ],
        "subtotal_usd": text(rated.subtotal_usd),
        "rounding_adjustment_usd": text(rated.rounding_adjustment_usd),
        "total_usd": format(rated.total_usd, "f"),
        "days_included": days,
        "computed_at": now,
    }


class InvoiceService:
    def __init__(self, store: BillingStore, recorder: RuntimeRecorder, close_delay_s: float) -> None:
        self._store = store
        self._recorder = recorder
        self._delay = timedelta(seconds=close_delay_s)
        # tenant -> last month known to be invoiced: later passes skip the tenant until a month ends.
        self._closed_through: dict[str, str] = {}

    async def plan_at(self, tenant_id: str, instant: datetime) -> PlanConfig | None:
        """The plan in effect at `instant` (the last PlanChanged before it), or None."""
        found: PlanConfig | None = None
        for envelope in await self._recorder.read(account_stream(tenant_id)):
            if envelope.event_type != "billing.PlanChanged":
                continue
            event = PlanChanged.model_validate(envelope.payload)
            if found is None or event.effective_at < instant:
                found = PLANS[event.plan]
        return found

    async def month_totals(self, tenant_id: str, month: str) -> tuple[dict[str, Decimal], list[str]]:
        totals: dict[str, Decimal] = {}
        days: list[str] = []
        for doc in await self._store.usage_days(tenant_id, month):
            days.append(doc["day"])
            for meter, total in (doc.get("meters") or {}).items():
                totals[meter] = totals.get(meter, Decimal(0)) + Decimal(str(total["quantity"]))
        return totals, days

    async def rate(self, tenant_id: str, month: str, plan: PlanConfig) -> tuple[RatedInvoice, list[str]]:
        totals, days = await self.month_totals(tenant_id, month)
        level = await self._store.storage_level_mb(tenant_id, last_day(month))
        return rate_period(plan, month, totals, level), days

    async def preview(self, tenant_id: str, month: str | None = None) -> dict[str, Any]:
        month = month or current_month()
        _, end = month_bounds(month)
        plan = await self.plan_at(tenant_id, min(end, datetime.now(UTC)))
        if plan is None:
            plan = PLANS["free"]
        rated, days = await self.rate(tenant_id, month, plan)
        return invoice_document(tenant_id, rated, "preview", days, datetime.now(UTC))

    async def close_month(self, tenant_id: str, month: str) -> dict[str, Any] | None:
        """Write the month's invoice once (a second call returns the stored one)."""
        existing = await self._store.invoice_for(tenant_id, month)
        if existing is not None:
            return existing
        _, end = month_bounds(month)
        plan = await self.plan_at(tenant_id, end)
        if plan is None:
            return None
        rated, days = await self.rate(tenant_id, month, plan)
        doc = invoice_document(tenant_id, rated, "finalized", days, datetime.now(UTC))
        doc["_id"] = f"{tenant_id}:{month}"
        await self._store.insert_invoice(doc)
        return await self._store.invoice_for(tenant_id, month)

    async def close_due(self, now: datetime | None = None) -> int:
        """Invoice every ended month (after the delay) of every account, from its first month on."""
        now = now or datetime.now(UTC)
        closed = 0
        for account in await self._store.accounts():
            tenant = account["tenant_id"]
            months = [
                m
                for m in _months_between(
                    min([current_month(account["created_at"]), *await self._store.usage_months(tenant)]),
                    current_month(now),
                )
                if month_bounds(m)[1] + self._delay <= now
            ]
            if not months or self._closed_through.get(tenant) == months[-1]:
                continue
            for month in months:
                if await self._store.invoice_for(tenant, month) is None and await self.close_month(
                    tenant, month
                ):
                    closed += 1
            self._closed_through[tenant] = months[-1]
        return closed
