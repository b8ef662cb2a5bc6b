"""Read side: daily and monthly usage (the shape billing relies on), the analytics dashboard."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ailab_contracts.events.usage import decimal_text

from ..domain.model import GROUP_DIMENSIONS, groups_of, month_of


def _meter_view(doc: dict[str, Any], group_by: str | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "quantity": doc["quantity"],
        "cost_usd_estimate": doc["cost"],
        "events": doc["events"],
        "unique_users": doc["unique_users"],
        "unique_projects": doc["unique_projects"],
    }
    if group_by:
        view["groups"] = {
            g["k"]: {"quantity": g["q"], "cost_usd_estimate": g["c"], "events": g["n"]}
            for g in groups_of(doc).get(group_by, [])
        }
    return view


def _page(periods: list[str], cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    if cursor:
        periods = [p for p in periods if p > cursor]
    page = periods[:limit]
    return page, (page[-1] if len(periods) > limit else None)


async def _periods(
    views: Any,
    tenant_id: str,
    kind: str,
    first: str,
    last: str,
    meter: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[str], dict[str, list[dict[str, Any]]], str | None]:
    """One page of the periods (days or months) with usage, and their aggregate documents."""
    by_period: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for doc in await views.aggregates(tenant_id, kind, first, last, meter):
        by_period[doc["period"]].append(doc)
    page, next_cursor = _page(sorted(by_period), cursor, limit)
    return page, by_period, next_cursor


async def daily(
    views: Any,
    tenant_id: str,
    first: str,
    last: str,
    *,
    meter: str | None,
    group_by: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    days, by_day, next_cursor = await _periods(views, tenant_id, "d", first, last, meter, cursor, limit)
    status = await views.day_status(tenant_id, days)
    items = []
    for day in days:
        st = status.get(day, {})
        closed = bool(st.get("closed"))
        sync = st.get("sync")
        items.append(
            {
                "tenant_id": tenant_id,
                "day": day,
                "closed": closed,
                "stripe_sync_status": sync["status"] if sync else ("pending" if closed else None),
                "stripe_sync_at": sync["at"] if sync else None,
                "meters": {d["meter"]: _meter_view(d, group_by) for d in by_day[day]},
            }
        )
    return items, next_cursor


async def monthly(
    views: Any,
    tenant_id: str,
    first: str,
    last: str,
    *,
    meter: str | None,
    group_by: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    months, by_month, next_cursor = await _periods(views, tenant_id, "m", first, last, meter, cursor, limit)
    items = [
        {
            "tenant_id": tenant_id,
            "month": month,
            "meters": {d["meter"]: _meter_view(d, group_by) for d in by_month[month]},
        }
        for month in months
    ]
    return items, next_cursor


def _top(docs: list[dict[str, Any]], dimension: str, n: int) -> list[dict[str, Any]]:
    totals: dict[str, list[Any]] = {}
    for doc in docs:
        for g in groups_of(doc).get(dimension, []):
            t = totals.setdefault(g["k"], [Decimal(0), 0])
            t[0] += Decimal(g["c"])
            t[1] += g["n"]
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
    return [{"key": k, "cost_usd_estimate": decimal_text(c), "events": e} for k, (c, e) in ranked]


async def dashboard(views: Any, tenant_id: str, month: str | None = None, top: int = 5) -> dict[str, Any]:
    month = month or month_of(datetime.now(UTC))
    month_docs = await views.aggregates(tenant_id, "m", month, month)
    year, mon = (int(x) for x in month.split("-"))
    first_day = datetime(year, mon, 1, tzinfo=UTC)
    last_day = (first_day + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    day_docs = await views.aggregates(
        tenant_id, "d", first_day.strftime("%Y-%m-%d"), last_day.strftime("%Y-%m-%d")
    )
    series: dict[str, dict[str, Any]] = {}
    for doc in day_docs:
        point = series.setdefault(doc["period"], {"day": doc["period"], "cost": Decimal(0), "meters": {}})
        point["cost"] += Decimal(doc["cost"])
        point["meters"][doc["meter"]] = doc["quantity"]
    total_cost = sum((Decimal(d["cost"]) for d in month_docs), Decimal(0))
    tokens = sum(
        (Decimal(d["quantity"]) for d in month_docs if d["meter"] in ("tokens_in", "tokens_out")), Decimal(0)
    )
    return {
        "tenant_id": tenant_id,
        "month": month,
        "totals": {
            "cost_usd_estimate": decimal_text(total_cost),
            "tokens": decimal_text(tokens),
            "meters": {d["meter"]: _meter_view(d, None) for d in month_docs},
        },
        "top_models": _top(month_docs, "model", top),
        "top_agents": _top(month_docs, "agent", top),
        "days": [
            {"day": p["day"], "cost_usd_estimate": decimal_text(p["cost"]), "meters": p["meters"]}
            for _, p in sorted(series.items())
        ],
    }


__all__ = ["GROUP_DIMENSIONS", "daily", "dashboard", "monthly"]
