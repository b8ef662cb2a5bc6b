"""Reconciliation of one month, per tenant and meter: what the usage-meter measured (its monthly
route), what billing rated (the closed days it received), and what billing sent to Stripe (its own
record of meter events, for the meters the plan bills). Every difference is listed; zero is normal."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from ..adapters.mongo_billing import BillingStore
from ..adapters.usage_meter_http import UsageMeterHttp, UsageMeterUnavailable
from ..domain.plans import PLANS
from ..domain.rating import text
from .invoices import InvoiceService


class ReconcileService:
    def __init__(self, store: BillingStore, invoices: InvoiceService, usage_meter: UsageMeterHttp) -> None:
        self._store = store
        self._invoices = invoices
        self._usage_meter = usage_meter

    async def month(self, month: str, tenant_id: str | None = None) -> dict[str, Any]:
        names = [a["tenant_id"] for a in await self._store.accounts()]
        names = [t for t in names if tenant_id is None or t == tenant_id]
        limit = asyncio.Semaphore(8)  # a few usage-meter calls at a time

        async def one(tenant: str) -> dict[str, Any]:
            async with limit:
                return await self._tenant(tenant, month)

        tenants = list(await asyncio.gather(*(one(t) for t in names)))
        differences = [d for row in tenants for d in row["differences"]]
        return {
            "month": month,
            "tenants": tenants,
            "differences": differences,
            "difference_count": len(differences),
        }

    async def _tenant(self, tenant: str, month: str) -> dict[str, Any]:
        differences: list[dict[str, Any]] = []
        error: str | None = None
        try:
            measured: dict[str, Decimal] | None = await self._usage_meter.monthly_totals(tenant, month)
        except UsageMeterUnavailable as exc:
            measured, error = None, str(exc)
            differences.append(
                {"tenant_id": tenant, "meter": None, "kind": "usage_meter_unavailable", "detail": error}
            )
        rated, days = await self._invoices.month_totals(tenant, month)
        sent: dict[str, Decimal] = {}
        for doc in await self._store.meter_events(tenant, month):
            sent[doc["meter"]] = sent.get(doc["meter"], Decimal(0)) + Decimal(doc["quantity"])
        # Expected in Stripe: the day's quantity of every meter that day's sync named (the plan's
        # billable meters with usage, at sync time).
        expected: dict[str, Decimal] = {}
        states = {state["day"]: state for state in await self._store.sync_states(tenant, month)}
        usage_docs = {d["day"]: d for d in await self._store.usage_days(tenant, month)}
        unsynced = [day for day in days if (states.get(day) or {}).get("status") != "synced"]
        for day in unsynced:
            status = (states.get(day) or {}).get("status")
            differences.append(
                {"tenant_id": tenant, "meter": None, "kind": "day_not_synced", "day": day, "status": status}
            )
        for day, state in states.items():
            if state["status"] != "synced":
                continue
            day_meters = (usage_docs.get(day) or {}).get("meters") or {}
            for meter in state.get("meters") or []:
                quantity = Decimal(str(day_meters[meter]["quantity"])) if meter in day_meters else Decimal(0)
                expected[meter] = expected.get(meter, Decimal(0)) + quantity
        meters = sorted(set(rated) | set(sent) | set(expected) | set(measured or {}))
        rows = []
        for meter in meters:
            row = {
                "meter": meter,
                "usage_meter": text(measured.get(meter, Decimal(0))) if measured is not None else None,
                "rated": text(rated.get(meter, Decimal(0))),
                "expected_in_stripe": text(expected.get(meter, Decimal(0))),
                "sent_to_stripe": text(sent.get(meter, Decimal(0))),
            }
            rows.append(row)
            if measured is not None and measured.get(meter, Decimal(0)) != rated.get(meter, Decimal(0)):
                differences.append(
                    {
                        "tenant_id": tenant,
                        "meter": meter,
                        "kind": "usage_meter_vs_rated",
                        "usage_meter": row["usage_meter"],
                        "rated": row["rated"],
                        "difference": text(measured.get(meter, Decimal(0)) - rated.get(meter, Decimal(0))),
                    }
                )
            if expected.get(meter, Decimal(0)) != sent.get(meter, Decimal(0)):
                differences.append(
                    {
                        "tenant_id": tenant,
                        "meter": meter,
                        "kind": "rated_vs_sent",
                        "expected_in_stripe": row["expected_in_stripe"],
                        "sent_to_stripe": row["sent_to_stripe"],
                        "difference": text(expected.get(meter, Decimal(0)) - sent.get(meter, Decimal(0))),
                    }
                )
        invoice = await self._store.invoice_for(tenant, month)
        if invoice is not None:
            # A day that closed after the month was invoiced is charged nowhere: list it.
            again, _ = await self._invoices.rate(tenant, month, PLANS[invoice["plan"]])
            if invoice["days_included"] != days or Decimal(invoice["total_usd"]) != again.total_usd:
                differences.append(
                    {
                        "tenant_id": tenant,
                        "meter": None,
                        "kind": "invoice_vs_rated",
                        "invoice_id": invoice["invoice_id"],
                        "invoice_total_usd": invoice["total_usd"],
                        "rated_total_usd": format(again.total_usd, "f"),
                        "days_not_invoiced": sorted(set(days) - set(invoice["days_included"])),
                    }
                )
        return {
            "tenant_id": tenant,
            "invoice_id": invoice["invoice_id"] if invoice else None,
            "days_closed": len(days),
            "days_synced": len(days) - len(unsynced),
            "meters": rows,
            "differences": differences,
            "usage_meter_error": error,
        }
