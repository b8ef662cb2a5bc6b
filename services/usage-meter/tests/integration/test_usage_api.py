"""Bulk ingestion → Kafka → ledger and aggregates → read API, day closing, Stripe sync status, quotas,
dashboard and export, on real Kafka and FerretDB."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ailab_contracts.events.billing import PlanChanged, UsageSyncStatusChanged
from ailab_contracts.events.tenancy import TenantCreated, TenantLimits
from ailab_contracts.topics import BILLING, TENANCY

from .conftest import Meter, day_offset

pytestmark = pytest.mark.integration


def tenant() -> str:
    return f"ten_{uuid.uuid4().hex[:10]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


async def test_yesterday_closes_with_its_totals_and_carries_billings_sync_status(meter: Meter) -> None:
    # First in the module: yesterday's last seconds are inside the late-arrival window only briefly.
    t = tenant()
    yesterday = (meter.today_start - timedelta(days=1)).strftime("%Y-%m-%d")
    body = await meter.ingest(
        t,
        [
            {
                "event_id": "a",
                "meter": "tokens_in",
                "quantity": "1000",
                "cost_usd_estimate": "0.0025",
                "model": "gpt-4o",
                "provider": "openai",
                "user_id": "u1",
                "project_id": "p1",
                "timestamp": day_offset(meter),
            },
            {
                "event_id": "b",
                "meter": "tokens_in",
                "quantity": "500.5",
                "cost_usd_estimate": "0.00125",
                "model": "gpt-4.1",
                "provider": "openai",
                "user_id": "u2",
                "timestamp": day_offset(meter, 2),
            },
        ],
    )
    assert body["accepted"] == 2, body
    closed = await meter.usage_events("usage.DailyUsageClosed", 1, timeout_s=60)
    event = next(e for e in closed if e["tenant_id"] == t)
    assert event["payload"]["day"] == yesterday
    assert event["payload"]["meters"]["tokens_in"] == {
        "quantity": "1500.5",
        "cost_usd_estimate": "0.00375",
        "events": 2,
        "unique_users": 2,
        "unique_projects": 1,
    }
    page = await meter.daily(t, **{"from": yesterday, "to": yesterday, "group_by": "model"})
    (item,) = page["items"]
    assert item["closed"] is True and item["stripe_sync_status"] == "pending"
    assert item["meters"]["tokens_in"]["groups"] == {
        "gpt-4.1": {"quantity": "500.5", "cost_usd_estimate": "0.00125", "events": 1},
        "gpt-4o": {"quantity": "1000", "cost_usd_estimate": "0.0025", "events": 1},
    }
    await meter.publish(
        BILLING,
        t,
        f"billing-sync:{t}:{yesterday}",
        UsageSyncStatusChanged(
            tenant_id=t,
            day=yesterday,
            status="synced",
            meters=["tokens_in"],
            attempts=1,
            at=datetime.now(UTC),
        ),
    )

    async def synced() -> bool:
        items = (await meter.daily(t, **{"from": yesterday, "to": yesterday}))["items"]
        return items[0]["stripe_sync_status"] == "synced"

    await meter.until(synced, what="stripe_sync_status synced")


async def test_bulk_answers_per_event_and_aggregates_are_exact(meter: Meter) -> None:
    t = tenant()
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = [
        {
            "event_id": "ok-1",
            "meter": "requests",
            "quantity": "1",
            "user_id": "u1",
            "project_id": "p1",
            "agent_id": "agt_1",
            "provider": "openai",
            "model": "gpt-4o",
            "cost_usd_estimate": "0.10",
        },
        {
            "event_id": "ok-2",
            "meter": "requests",
            "quantity": "2",
            "user_id": "u2",
            "project_id": "p1",
            "agent_id": "agt_2",
            "provider": "anthropic",
            "model": "claude-3.5",
            "cost_usd_estimate": "0.000001",
        },
    ]
    # Rejections: what differs from a valid one-request event, and the reason expected.
    bad: dict[str, dict[str, Any]] = {
        "bad-meter": {"meter": "tokens_sideways"},
        "bad-negative": {"quantity": "-1"},
        "bad-future": {"timestamp": (now + timedelta(hours=2)).isoformat()},
        "bad-old": {"timestamp": (now - timedelta(days=5)).isoformat()},
        "bad-tenant": {"tenant_id": "someone-else"},
        "bad-float": {"quantity": 0.1},
    }
    events += [{"event_id": k, "meter": "requests", "quantity": "1", **v} for k, v in bad.items()]
    events.append({"event_id": "storage-free", "meter": "storage_mb", "quantity": "-2.5"})
    body = await meter.ingest(t, events)
    reasons = {r["event_id"]: (r["status"], r["reason"]) for r in body["results"]}
    assert reasons == {
        "ok-1": ("accepted", None),
        "ok-2": ("accepted", None),
        "bad-meter": ("rejected", "unknown_meter"),
        "bad-negative": ("rejected", "negative_quantity"),
        "bad-future": ("rejected", "timestamp_in_future"),
        "bad-old": ("rejected", "timestamp_too_old"),
        "bad-tenant": ("rejected", "tenant_mismatch"),
        "bad-float": ("rejected", "invalid_event"),
        "storage-free": ("accepted", None),
    }
    assert (body["accepted"], body["rejected"]) == (3, 6)
    # The same ids again (a client retry) and the same id twice in one request count once.
    again = await meter.ingest(t, [events[0], events[1], events[1]])
    assert again["accepted"] == 3

    today = now.strftime("%Y-%m-%d")

    async def totals() -> dict[str, Any] | None:
        items = (await meter.daily(t, **{"from": today, "to": today, "group_by": "agent"}))["items"]
        ok = items and items[0]["meters"].get("requests", {}).get("events") == 2
        return items[0] if ok else None

    item = await meter.until(totals, what="requests aggregated")
    requests = item["meters"]["requests"]
    assert (requests["quantity"], requests["cost_usd_estimate"]) == ("3", "0.100001")
    assert (requests["unique_users"], requests["unique_projects"]) == (1 + 1, 1)
    assert set(requests["groups"]) == {"agt_1", "agt_2"}
    assert item["meters"]["storage_mb"]["quantity"] == "-2.5"
    assert item["closed"] is False and item["stripe_sync_status"] is None
    monthly = await meter.client.get(f"/v1/tenants/{t}/usage/monthly", params={"meter": "requests"})
    assert monthly.status_code == 200
    (month,) = monthly.json()["items"]
    assert month["month"] == now.strftime("%Y-%m") and month["meters"]["requests"]["quantity"] == "3"
    await meter.until(lambda: _dups(meter), what="duplicates counted")
    exposed = await meter.client.get("/metrics", headers={"X-Internal-Token": ""})
    assert exposed.status_code == 200 and exposed.headers["content-type"].startswith("text/plain")
    samples = dict(line.rsplit(" ", 1) for line in exposed.text.splitlines() if not line.startswith("#"))
    assert int(samples["usage_events_duplicate_total"]) >= 2
    assert int(samples["usage_events_applied_total"]) >= 4
    assert "# TYPE usage_events_duplicate_total counter" in exposed.text
    assert float(samples['usage_event_lag_seconds{quantile="0.99"}']) >= 0  # events applied just now

    dash = await meter.client.get(f"/v1/tenants/{t}/analytics/dashboard")
    assert dash.status_code == 200, dash.text
    board = dash.json()
    assert board["totals"]["cost_usd_estimate"] == "0.100001"
    assert [m["key"] for m in board["top_models"]] == ["gpt-4o", "claude-3.5"]
    assert [a["key"] for a in board["top_agents"]] == ["agt_1", "agt_2"]
    assert board["days"][-1]["day"] == today

    admin = {"X-Principal-Role": "platform_admin"}
    params = {"tenant_id": t, "from": today, "to": today}
    forbidden = await meter.client.get("/v1/admin/usage/export", params=params)
    assert forbidden.status_code == 403
    lines = await meter.client.get(
        "/v1/admin/usage/export", params={**params, "format": "jsonl"}, headers=admin
    )
    assert lines.status_code == 200
    rows = [json.loads(line) for line in lines.text.splitlines()]
    assert sorted(r["quantity"] for r in rows) == ["-2.5", "1", "2"]
    table = await meter.client.get(
        "/v1/admin/usage/export", params={**params, "format": "csv"}, headers=admin
    )
    parsed = list(csv.DictReader(io.StringIO(table.text)))
    assert {r["event_id"] for r in parsed} == {r["event_id"] for r in rows}
    assert table.headers["content-type"].startswith("text/csv")


async def _dups(meter: Meter) -> bool:
    return meter.services.consumer.stats.duplicates >= 2


async def test_quota_states_cross_80_and_100_percent_and_fall_back_on_a_raised_limit(meter: Meter) -> None:
    t = tenant()
    limits = TenantLimits(
        max_users=5, max_projects=5, max_requests_per_month=10, max_tokens_per_month=-1, max_storage_gb=1
    )
    await meter.publish(
        TENANCY,
        t,
        f"tenant:{t}",
        TenantCreated(tenant_id=t, name="T", plan="free", limits=limits, created_by="usr_admin"),
    )
    await meter.until(lambda: meter.services.views.limits(t), what="limits known")
    await meter.ingest(t, [{"event_id": f"r{i}", "meter": "requests", "quantity": "1"} for i in range(8)])
    await meter.ingest(t, [{"event_id": "tokens", "meter": "tokens_in", "quantity": "99999999"}])

    async def states() -> list[tuple[str, str, int]]:
        found = await meter.usage_events("usage.QuotaStateChanged", 0, timeout_s=5)
        return [
            (e["payload"]["quota"], e["payload"]["state"], e["payload"]["sequence"])
            for e in found
            if e["tenant_id"] == t
        ]

    await meter.until(lambda: _has(states, ("requests", "warning", 1)), what="warning")
    await meter.ingest(t, [{"event_id": f"r{i}", "meter": "requests", "quantity": "1"} for i in range(8, 10)])
    await meter.until(lambda: _has(states, ("requests", "exceeded", 2)), what="exceeded")
    raised = limits.model_copy(update={"max_requests_per_month": 100})
    await meter.publish(
        BILLING,
        t,
        f"billing-account:{t}",
        PlanChanged(
            tenant_id=t,
            plan="pro",
            previous_plan="free",
            plan_version=1,
            limits=raised,
            base_price_usd="29",
            changed_by="usr_admin",
            effective_at=datetime.now(UTC),
        ),
    )
    await meter.until(lambda: _has(states, ("requests", "ok", 3)), what="back to ok")
    found = await states()
    assert all(q == "requests" for q, _, _ in found), found  # unlimited tokens never change state
    exceeded = next(
        e
        for e in await meter.usage_events("usage.QuotaStateChanged", 1)
        if e["tenant_id"] == t and e["payload"]["state"] == "exceeded"
    )
    assert exceeded["payload"]["used"] == "10" and exceeded["payload"]["limit"] == 10
    assert exceeded["payload"]["threshold_pct"] == 100 and exceeded["payload"]["previous_state"] == "warning"


async def _has(states: Any, wanted: tuple[str, str, int]) -> bool:
    return wanted in await states()


async def test_bad_input_is_a_422_naming_the_field(meter: Meter) -> None:
    t = tenant()
    too_many = await meter.client.post(
        f"/v1/tenants/{t}/usage/events", json={"events": [{"meter": "requests", "quantity": "1"}] * 1001}
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["details"][0]["loc"][-1] == "events"
    bad_day = await meter.client.get(f"/v1/tenants/{t}/usage/daily", params={"from": "2026-13-01"})
    assert bad_day.status_code == 422 and bad_day.json()["error"]["details"][0]["loc"] == ["query", "from"]
    bad_meter = await meter.client.get(f"/v1/tenants/{t}/usage/monthly", params={"meter": "nope"})
    assert bad_meter.status_code == 422
    bad_group = await meter.client.get(f"/v1/tenants/{t}/usage/daily", params={"group_by": "colour"})
    assert bad_group.status_code == 422
    empty = await meter.daily(t)
    assert empty == {"items": [], "next_cursor": None}


async def test_a_platform_admin_closes_today_early_and_billing_gets_its_totals(meter: Meter) -> None:
    t = tenant()
    today = meter.today_start.strftime("%Y-%m-%d")
    admin = {"X-Principal-Role": "platform_admin", "X-Principal-Id": "usr_admin"}
    path = "/v1/admin/usage/days/close"
    forbidden = await meter.client.post(path, json={"tenant_id": t, "day": today})
    assert forbidden.status_code == 403
    nothing = await meter.client.post(path, json={"tenant_id": t, "day": today}, headers=admin)
    assert nothing.status_code == 404, nothing.text
    await meter.ingest(
        t, [{"event_id": "x1", "meter": "tokens_out", "quantity": "42", "timestamp": now_iso()}]
    )

    async def counted() -> bool:
        reply = await meter.client.get(f"/v1/tenants/{t}/usage/daily", params={"from": today, "to": today})
        items = reply.json()["items"]
        return bool(items) and items[0]["meters"].get("tokens_out", {}).get("quantity") == "42"

    await meter.until(counted, what="today's usage counted")
    asked = await meter.client.post(path, json={"tenant_id": t, "day": today}, headers=admin)
    assert asked.status_code == 202 and asked.json()["status"] == "requested", asked.text

    async def closed_event() -> list[dict[str, Any]]:
        found = await meter.usage_events("usage.DailyUsageClosed", 1, timeout_s=5)
        return [e for e in found if e["tenant_id"] == t]

    mine = await meter.until(closed_event, what="usage.DailyUsageClosed of today")
    assert [e["payload"]["day"] for e in mine] == [today]
    assert mine[0]["payload"]["meters"]["tokens_out"]["quantity"] == "42"

    async def shown_closed() -> bool:
        reply = await meter.client.get(f"/v1/tenants/{t}/usage/daily", params={"from": today, "to": today})
        return bool(reply.json()["items"][0]["closed"])

    await meter.until(shown_closed, what="the day shown closed")
    again = await meter.client.post(path, json={"tenant_id": t, "day": today}, headers=admin)
    assert again.status_code == 202 and again.json()["status"] == "closed"
    future = (meter.today_start + timedelta(days=2)).strftime("%Y-%m-%d")
    assert (
        await meter.client.post(path, json={"tenant_id": t, "day": future}, headers=admin)
    ).status_code == 422
