"""Closed days to Stripe (stripe-mock) exactly once, retried after an error, invoices equal to a hand
computation, and reconciliation against a server answering the usage-meter's monthly route."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ailab_contracts.events.usage import DailyUsageClosed, MeterTotal
from ailab_contracts.topics import USAGE

from .conftest import ADMIN, PLATFORM, Billing

pytestmark = [
    pytest.mark.integration,
    # stripe's HTTPX client posts form bodies with `data=` bytes, which httpx 0.28 deprecates.
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]


def closed(tenant: str, day: str, **meters: str) -> DailyUsageClosed:
    return DailyUsageClosed(
        tenant_id=tenant,
        day=day,
        meters={
            m: MeterTotal(quantity=q, cost_usd_estimate="0", events=1, unique_users=1, unique_projects=1)  # type: ignore[arg-type]
            for m, q in meters.items()
        },
        closed_at=datetime.now(UTC),
    )


async def publish_day(billing: Billing, event: DailyUsageClosed) -> str:
    [event_id] = await billing.publish(
        USAGE, event.tenant_id, f"usage-day:{event.tenant_id}:{event.day}", event
    )
    return event_id


async def wait_consumed(billing: Billing, event_id: str) -> None:
    marker = f"{billing.settings.topic_prefix}billing.usage:{event_id}"
    await billing.eventually(lambda: billing.runtime.db["processed_events"].find_one({"_id": marker}))


async def sync_state(billing: Billing, tenant: str, day: str, status: str = "synced") -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return await billing.runtime.db["usage_sync"].find_one({"_id": f"{tenant}:{day}"})

    state: dict[str, Any] = await billing.eventually(probe, lambda s: s["status"] == status)
    return state


async def test_a_closed_day_reaches_stripe_once_and_a_replay_sends_nothing(billing: Billing) -> None:
    tenant = billing.tenant()
    await billing.create_tenant(tenant, "pro")
    day = closed(tenant, "2026-11-20", tokens_in="125000", tokens_out="40000", requests="12")
    await publish_day(billing, day)
    state = await sync_state(billing, tenant, "2026-11-20")
    assert state["meters"] == ["tokens_in", "tokens_out"] and state["attempts"] == 1
    sent = [
        d async for d in billing.runtime.db["stripe_meter_events"].find({"tenant_id": tenant}).sort("_id", 1)
    ]
    assert [(d["_id"], d["event_name"], d["value"]) for d in sent] == [
        (f"{tenant}:2026-11-20:tokens_in", "ailab_tokens_in", "125000"),
        (f"{tenant}:2026-11-20:tokens_out", "ailab_tokens_out", "40000"),
    ]
    events = await billing.billing_events(tenant, "billing.UsageSyncStatusChanged", at_least=2)
    assert [(e["payload"]["status"], e["payload"]["attempts"]) for e in events] == [
        ("pending", 0),
        ("synced", 1),
    ]
    assert events[1]["payload"]["meters"] == ["tokens_in", "tokens_out"]

    usage = await billing.get_json(f"/v1/tenants/{tenant}/billing/usage", month="2026-11")
    assert usage is not None
    assert usage["totals"] == {"requests": "12", "tokens_in": "125000", "tokens_out": "40000"}
    assert usage["days"][0]["stripe_sync_status"] == "synced"
    assert [(e["identifier"], e["value"]) for e in usage["days"][0]["stripe_meter_events"]] == [
        (f"{tenant}:2026-11-20:tokens_in", "125000"),
        (f"{tenant}:2026-11-20:tokens_out", "40000"),
    ]

    # The same day delivered again (a replay with a new envelope): nothing more goes to Stripe.
    replay_id = await publish_day(
        billing, closed(tenant, "2026-11-20", tokens_in="125000", tokens_out="40000")
    )
    await wait_consumed(billing, replay_id)
    assert await billing.runtime.db["stripe_meter_events"].count_documents({"tenant_id": tenant}) == 2
    assert len(await billing.billing_events(tenant, "billing.UsageSyncStatusChanged")) == 2


async def test_a_free_tenant_syncs_without_charges(billing: Billing) -> None:
    tenant = billing.tenant()
    await billing.create_tenant(tenant, "free")
    await publish_day(billing, closed(tenant, "2026-11-21", tokens_in="500"))
    state = await sync_state(billing, tenant, "2026-11-21")
    assert state["meters"] == []
    assert await billing.runtime.db["stripe_meter_events"].count_documents({"tenant_id": tenant}) == 0


async def test_invoice_and_reconcile_of_a_month_equal_the_hand_computation(billing: Billing) -> None:
    tenant = billing.tenant()
    # The days close before billing knows the tenant: the sync fails (`error`) and is retried with
    # backoff until the tenant arrives.
    await publish_day(
        billing,
        closed(
            tenant, "2026-10-05", tokens_in="125000", tokens_out="40000", egress_mb="512", storage_mb="1024"
        ),
    )
    last = await publish_day(
        billing, closed(tenant, "2026-10-06", tokens_in="75000", tokens_out="2503", storage_mb="-512")
    )
    await wait_consumed(billing, last)
    failed = await sync_state(billing, tenant, "2026-10-06", status="error")
    assert "not known to billing" in failed["error"]
    await billing.create_tenant(tenant, "pro")
    first = await sync_state(billing, tenant, "2026-10-05")
    second = await sync_state(billing, tenant, "2026-10-06")
    assert first["attempts"] >= 2 and second["attempts"] >= 2
    statuses = [
        e["payload"]["status"]
        for e in await billing.billing_events(tenant, "billing.UsageSyncStatusChanged", at_least=6)
    ]
    assert statuses.count("pending") == 2 and statuses.count("synced") == 2 and "error" in statuses

    # Storage goes to Stripe as the level held at the end of each day (a `last` meter).
    storage = await billing.runtime.db["stripe_meter_events"].find_one(
        {"_id": f"{tenant}:2026-10-06:storage_mb"}
    )
    assert storage is not None and storage["value"] == "512" and storage["quantity"] == "-512"

    # Hand computation (pro, version 1):
    #   base                                   29
    #   tokens_in   200000 × 0.000001        =  0.2
    #   tokens_out   42503 × 0.000002        =  0.085006
    #   storage_mb  512 MB = 0.5 GB × 0.10   =  0.05   (level at the end of the month)
    #   egress_mb   512 MB = 0.5 GB × 0.05   =  0.025
    #   subtotal 29.360006 → total 29.36 (rounded once, half up)
    preview = await billing.get_json(f"/v1/tenants/{tenant}/billing/invoices/preview", month="2026-10")
    assert preview is not None
    amounts = {(line["meter"] or "base"): line["amount_usd"] for line in preview["lines"]}
    assert amounts == {
        "base": "29",
        "tokens_in": "0.2",
        "tokens_out": "0.085006",
        "storage_mb": "0.05",
        "egress_mb": "0.025",
    }
    assert preview["subtotal_usd"] == "29.360006"
    assert preview["total_usd"] == "29.36"
    assert preview["rounding_adjustment_usd"] == "-0.000006"
    assert preview["days_included"] == ["2026-10-05", "2026-10-06"]
    assert sum(Decimal(a) for a in amounts.values()) == Decimal(preview["subtotal_usd"])

    # October has ended (close delay 0 in tests): the loop finalizes its invoice with the same numbers.
    invoices = await billing.eventually(
        lambda: billing.get_json(f"/v1/tenants/{tenant}/billing/invoices"),
        lambda page: len(page["items"]) >= 1,
    )
    [invoice] = [i for i in invoices["items"] if i["period"] == "2026-10"]
    assert invoice["invoice_id"] == "in_202610" and invoice["status"] == "finalized"
    assert invoice["total_usd"] == "29.36" and invoice["lines"] == preview["lines"]
    one = await billing.get_json(f"/v1/tenants/{tenant}/billing/invoices/in_202610")
    assert one is not None and one["subtotal_usd"] == "29.360006"
    missing = await billing.client.get(f"/v1/tenants/{tenant}/billing/invoices/in_209901")
    assert missing.status_code == 404

    # Reconcile: the usage-meter's monthly totals equal what billing rated and sent: zero differences.
    billing.usage_meter.monthly[(tenant, "2026-10")] = {
        "tokens_in": "200000",
        "tokens_out": "42503",
        "egress_mb": "512",
        "storage_mb": "512",
    }
    path = "/v1/admin/billing/reconcile"
    report = (
        await billing.client.get(path, params={"month": "2026-10", "tenant_id": tenant}, headers=PLATFORM)
    ).json()
    assert report["difference_count"] == 0, report
    [row] = report["tenants"]
    assert row["days_closed"] == 2 and row["days_synced"] == 2
    by_meter = {m["meter"]: m for m in row["meters"]}
    assert by_meter["tokens_out"] == {
        "meter": "tokens_out",
        "usage_meter": "42503",
        "rated": "42503",
        "expected_in_stripe": "42503",
        "sent_to_stripe": "42503",
    }
    assert any(
        f"/v1/tenants/{tenant}/usage/monthly?from=2026-10&to=2026-10" in c for c in billing.usage_meter.calls
    )

    # A usage-meter total that differs from what billing rated is listed with the difference.
    billing.usage_meter.monthly[(tenant, "2026-10")]["tokens_in"] = "200100"
    report = (
        await billing.client.get(path, params={"month": "2026-10", "tenant_id": tenant}, headers=PLATFORM)
    ).json()
    assert report["differences"] == [
        {
            "tenant_id": tenant,
            "meter": "tokens_in",
            "kind": "usage_meter_vs_rated",
            "usage_meter": "200100",
            "rated": "200000",
            "difference": "100",
        }
    ]
    assert report["tenants"][0]["invoice_id"] == "in_202610"

    # A day closing after October was invoiced is rated but on no invoice: listed as well.
    late = await publish_day(billing, closed(tenant, "2026-10-31", tokens_in="10"))
    await wait_consumed(billing, late)
    await sync_state(billing, tenant, "2026-10-31")
    billing.usage_meter.monthly[(tenant, "2026-10")]["tokens_in"] = "200010"
    report = (
        await billing.client.get(path, params={"month": "2026-10", "tenant_id": tenant}, headers=PLATFORM)
    ).json()
    assert [d["kind"] for d in report["differences"]] == ["invoice_vs_rated"]
    assert report["differences"][0]["days_not_invoiced"] == ["2026-10-31"]

    forbidden = await billing.client.get(path, params={"month": "2026-10"}, headers=ADMIN)
    assert forbidden.status_code == 403
    bad_month = await billing.client.get(path, params={"month": "2026-13"}, headers=PLATFORM)
    assert bad_month.status_code == 422


async def test_rebuilt_projections_equal_the_live_ones(billing: Billing) -> None:
    tenant = billing.tenant()
    await billing.create_tenant(tenant, "pro")
    await publish_day(billing, closed(tenant, "2026-11-22", tokens_in="10"))
    await sync_state(billing, tenant, "2026-11-22")
    db = billing.runtime.db

    async def snapshot() -> list[Any]:
        account = await db["accounts"].find_one({"_id": tenant})
        state = await db["usage_sync"].find_one({"_id": f"{tenant}:2026-11-22"})
        return [account, state]

    before = await snapshot()
    await billing.runtime.projector.rebuild()
    assert await snapshot() == before


async def test_stripe_unreachable_means_error_then_a_retry_syncs(billing: Billing) -> None:
    """The same services over the module's database, but with Stripe at an address nobody answers."""
    from ailab_runtime.counters import KeyedSerializer
    from ailab_runtime.errors import ApiError
    from billing.adapters.stripe_api import StripeApi
    from billing.application.accounts import AccountService, StripePrices
    from billing.application.usage_sync import SyncSettings, UsageSyncService

    real_sync = billing.runtime.extras["usage_sync"]
    real_accounts = billing.runtime.extras["accounts"]
    down = StripeApi("sk_test_123", "http://127.0.0.1:9", timeout_s=0.5, network_retries=0)
    accounts = AccountService(
        real_accounts.store, real_accounts._recorder, down, StripePrices("price_ailab_"), KeyedSerializer()
    )
    tenant = billing.tenant()
    await billing.create_tenant(tenant, "free")
    with pytest.raises(ApiError) as refused:
        await accounts.change_plan(tenant, "pro", "usr_admin")
    assert refused.value.status == 502 and refused.value.code == "stripe_error"
    assert (await billing.get_json(f"/v1/tenants/{tenant}/billing/plan"))["plan"] == "free"  # type: ignore[index]

    response = await billing.client.put(f"/v1/tenants/{tenant}/billing/plan", json={"plan": "pro"})
    assert response.status_code == 200
    await billing.runtime.db["usage_days"].insert_one(
        {
            "_id": f"{tenant}:2026-11-23",
            "tenant_id": tenant,
            "day": "2026-11-23",
            "month": "2026-11",
            "meters": {"tokens_in": {"quantity": "7"}},
        }
    )
    broken = UsageSyncService(
        real_accounts.store,
        real_accounts._recorder,
        down,
        accounts,
        SyncSettings("ailab_", max_attempts=8, backoff_s=0.3, backoff_max_s=1),
        serializer=real_sync._serializer,  # as one process: one attempt at a time per day
    )
    assert await broken.sync(tenant, "2026-11-23") == "error"
    assert await billing.runtime.db["stripe_meter_events"].count_documents({"tenant_id": tenant}) == 0
    # The app's own loop retries after the backoff, with Stripe reachable.
    state = await sync_state(billing, tenant, "2026-11-23")
    assert state["attempts"] == 2 and state["meters"] == ["tokens_in"]
    events = await billing.billing_events(tenant, "billing.UsageSyncStatusChanged", at_least=3)
    assert [(e["payload"]["status"], e["payload"]["attempts"]) for e in events] == [
        ("pending", 0),
        ("error", 1),
        ("synced", 2),
    ]
    assert events[1]["payload"]["error"].startswith("stripe:")


async def test_a_day_out_of_attempts_is_retried_by_an_operator(billing: Billing) -> None:
    """A day whose automatic retries ran out stays `error`; the admin route starts its count again
    and sends it now. Synced days and unknown days are answered without recording anything."""
    from billing.application.usage_sync import sync_stream

    real_sync = billing.runtime.extras["usage_sync"]
    tenant = billing.tenant()
    await billing.create_tenant(tenant, "pro")
    day = "2026-11-24"
    await billing.runtime.db["usage_days"].insert_one(
        {
            "_id": f"{tenant}:{day}",
            "tenant_id": tenant,
            "day": day,
            "month": day[:7],
            "meters": {"tokens_in": {"quantity": "11"}},
        }
    )
    # The state a day is left in after its last automatic attempt failed.
    stream = sync_stream(tenant, day)
    max_attempts = billing.settings.usage_sync_max_attempts
    await real_sync._record(stream, 0, tenant, day, "error", [], "stripe: timed out", max_attempts)
    assert await real_sync.sync(tenant, day) == "error"  # no attempts left: nothing is tried

    path = f"/v1/admin/billing/usage-sync/{tenant}/{day}/retry"
    refused = await billing.client.post(path, headers=ADMIN)
    assert refused.status_code == 403
    retried = await billing.client.post(path, headers=PLATFORM)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {
        "tenant_id": tenant,
        "day": day,
        "status": "synced",
        "attempts": 1,
        "meters": ["tokens_in"],
        "error": None,
    }
    events = await billing.billing_events(tenant, "billing.UsageSyncStatusChanged", at_least=3)
    assert [(e["payload"]["status"], e["payload"]["attempts"]) for e in events] == [
        ("error", max_attempts),
        ("pending", 0),
        ("synced", 1),
    ]
    sent = await billing.runtime.db["stripe_meter_events"].count_documents({"tenant_id": tenant})
    assert sent == 1

    again = await billing.client.post(path, headers=PLATFORM)  # synced: left as it is
    assert again.status_code == 200 and again.json()["status"] == "synced"
    assert len(await billing.billing_events(tenant, "billing.UsageSyncStatusChanged")) == 3
    unknown = await billing.client.post(
        f"/v1/admin/billing/usage-sync/{tenant}/2026-01-01/retry", headers=PLATFORM
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    bad_day = await billing.client.post(
        f"/v1/admin/billing/usage-sync/{tenant}/2026-13-01/retry", headers=PLATFORM
    )
    assert bad_day.status_code == 422
