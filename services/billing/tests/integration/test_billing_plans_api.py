"""Plans, Stripe customers/subscriptions (against stripe-mock) and Stripe webhooks, on real Kafka and
FerretDB: tenants arrive through tenancy.TenantCreated, users and projects through their events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import pytest

from ailab_contracts.events.registry import ProjectCreated, ProjectDeleted
from ailab_contracts.events.tenancy import UserJoined, UserRemoved
from ailab_contracts.events.usage import UsageRecorded
from ailab_contracts.topics import REGISTRY, TENANCY, USAGE
from tests.support.stripe_events import stripe_event

from .conftest import PLATFORM, Billing

pytestmark = [
    pytest.mark.integration,
    # stripe's HTTPX client posts form bodies with `data=` bytes, which httpx 0.28 deprecates.
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]


def storage_change(tenant: str, megabytes: str, request_id: str, timestamp: str) -> UsageRecorded:
    """A dataset's storage growing (or shrinking, negative) by `megabytes`, as the registry meters it."""
    return UsageRecorded(
        tenant_id=tenant,
        user_id="usr_0",
        meter="storage_mb",
        quantity=megabytes,  # type: ignore[arg-type]
        provider="internal",
        request_id=request_id,
        timestamp=timestamp,  # type: ignore[arg-type]
    )


async def test_a_paid_tenant_gets_a_stripe_customer_and_subscription(billing: Billing) -> None:
    tenant = billing.tenant()
    plan = await billing.create_tenant(tenant, "pro")
    assert plan["plan"] == "pro" and plan["plan_version"] == 1 and plan["status"] == "active"
    assert plan["base_price_usd"] == "29"
    assert plan["limits"]["max_users"] == 10
    assert plan["stripe"]["customer_id"].startswith("cus_")
    assert plan["stripe"]["subscription_id"].startswith("sub_")
    [event] = await billing.billing_events(tenant, "billing.PlanChanged", at_least=1)
    assert event["payload"]["plan"] == "pro" and event["payload"]["previous_plan"] is None
    assert event["stream_id"] == f"billing-account:{tenant}"


async def test_upgrade_subscribes_in_stripe_and_emits_plan_changed(billing: Billing) -> None:
    tenant = billing.tenant()
    plan = await billing.create_tenant(tenant, "free")
    assert plan["stripe"] == {"customer_id": None, "subscription_id": None, "subscription_status": None}
    response = await billing.client.put(f"/v1/tenants/{tenant}/billing/plan", json={"plan": "pro"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["plan"] == "pro" and body["previous_plan"] == "free"
    assert body["stripe"]["subscription_id"].startswith("sub_")
    assert [r["meter"] for r in body["metered_rates"]] == [
        "tokens_in",
        "tokens_out",
        "storage_mb",
        "egress_mb",
    ]
    events = await billing.billing_events(tenant, "billing.PlanChanged", at_least=2)
    assert [(e["payload"]["previous_plan"], e["payload"]["plan"]) for e in events] == [
        (None, "free"),
        ("free", "pro"),
    ]
    assert events[1]["payload"]["limits"]["max_projects"] == 50
    assert events[1]["payload"]["changed_by"] == "usr_admin"
    # Choosing the current plan again changes nothing.
    again = await billing.client.put(f"/v1/tenants/{tenant}/billing/plan", json={"plan": "pro"})
    assert again.status_code == 200
    assert len(await billing.billing_events(tenant, "billing.PlanChanged")) == 2


async def test_a_downgrade_over_the_new_limits_is_refused_with_the_reasons(billing: Billing) -> None:
    tenant = billing.tenant()
    await billing.create_tenant(tenant, "pro")
    users = [f"usr_{i}" for i in range(5)]
    await billing.publish(
        TENANCY, tenant, f"tenant:{tenant}", *[UserJoined(user_id=u, email=f"{u}@x.example") for u in users]
    )
    projects = [f"prj_{i}" for i in range(4)]
    for p in projects:
        await billing.publish(
            REGISTRY,
            tenant,
            f"project:{tenant}:{p}",
            ProjectCreated(project_id=p, name=p, created_by="usr_0"),
        )
    await billing.publish(
        USAGE,
        tenant,
        f"dataset:{tenant}:dst_1",
        storage_change(tenant, "2048", "req_1", "2026-11-27T10:00:00Z"),
    )
    plan_path = f"/v1/tenants/{tenant}/billing/plan"
    await billing.eventually(
        lambda: billing.get_json(plan_path),
        lambda p: p["usage"] == {"users": 5, "projects": 4, "storage_mb": "2048"},
    )
    response = await billing.client.put(plan_path, json={"plan": "free"})
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "plan_limits_exceeded"
    assert error["details"] == [
        {"limit": "max_users", "allowed": 3, "current": "5"},
        {"limit": "max_projects", "allowed": 3, "current": "4"},
        {"limit": "max_storage_gb", "allowed": 1, "current": "2"},
    ]
    assert (await billing.get_json(plan_path))["plan"] == "pro"  # type: ignore[index]
    assert len(await billing.billing_events(tenant, "billing.PlanChanged")) == 1

    # Removing users and projects, and freeing storage, makes room for the downgrade.
    await billing.publish(
        TENANCY, tenant, f"tenant:{tenant}", *[UserRemoved(user_id=u, removed_by="usr_0") for u in users[:2]]
    )
    await billing.publish(
        REGISTRY, tenant, f"project:{tenant}:prj_0", ProjectDeleted(project_id="prj_0", deleted_by="usr_0")
    )
    await billing.publish(
        USAGE,
        tenant,
        f"dataset:{tenant}:dst_1",
        storage_change(tenant, "-1500", "req_2", "2026-11-27T11:00:00Z"),
    )
    await billing.eventually(
        lambda: billing.get_json(plan_path),
        lambda p: p["usage"] == {"users": 3, "projects": 3, "storage_mb": "548"},
    )
    response = await billing.client.put(plan_path, json={"plan": "free"})
    assert response.status_code == 200, response.text
    assert response.json()["stripe"]["subscription_status"] == "canceled"
    events = await billing.billing_events(tenant, "billing.PlanChanged", at_least=2)
    assert events[-1]["payload"]["plan"] == "free" and events[-1]["payload"]["limits"]["max_users"] == 3


async def test_bad_plan_requests_get_clear_errors(billing: Billing) -> None:
    tenant = billing.tenant()
    await billing.create_tenant(tenant, "free")
    path = f"/v1/tenants/{tenant}/billing/plan"
    bad = await billing.client.put(path, json={"plan": "gold"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    assert bad.json()["error"]["details"][0]["loc"] == ["body", "plan"]
    unknown = await billing.client.get(f"/v1/tenants/ten_{uuid.uuid4().hex}/billing/plan")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    analyst = await billing.client.put(path, json={"plan": "pro"}, headers={"X-Principal-Role": "analyst"})
    assert analyst.status_code == 403
    no_token = await billing.client.get(path, headers={"X-Internal-Token": "wrong"})
    assert no_token.status_code == 401
    as_platform = await billing.client.put(path, json={"plan": "enterprise"}, headers=PLATFORM)
    assert as_platform.status_code == 200 and as_platform.json()["plan"] == "enterprise"


async def test_payment_failed_suspends_paid_restores_and_a_replay_does_nothing(billing: Billing) -> None:
    tenant = billing.tenant()
    plan = await billing.create_tenant(tenant, "pro")
    customer = plan["stripe"]["customer_id"]
    plan_path = f"/v1/tenants/{tenant}/billing/plan"
    failed = stripe_event(
        "invoice.payment_failed",
        {"id": "in_fail1", "object": "invoice", "customer": customer, "status": "open"},
    )
    body, headers = billing.signed(failed)
    response = await billing.client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "received": True,
        "event_id": failed["id"],
        "type": failed["type"],
        "status": "processed",
    }
    assert (await billing.get_json(plan_path))["status"] == "suspended"  # type: ignore[index]
    [suspended] = await billing.billing_events(tenant, "billing.AccountStatusChanged", at_least=1)
    assert suspended["payload"]["status"] == "suspended"
    assert suspended["payload"]["reason"] == "invoice.payment_failed"
    assert suspended["payload"]["invoice_id"] == "in_fail1"

    # The same delivery again, and the same event re-signed later: both are duplicates.
    replay = await billing.client.post("/webhooks/stripe", content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    resigned = await billing.webhook(failed)
    assert resigned.status_code == 200 and resigned.json()["status"] == "duplicate"

    paid = stripe_event(
        "invoice.paid", {"id": "in_fail1", "object": "invoice", "customer": customer, "status": "paid"}
    )
    assert (await billing.webhook(paid)).json()["status"] == "processed"
    assert (await billing.get_json(plan_path))["status"] == "active"  # type: ignore[index]
    assert (await billing.webhook(paid)).json()["status"] == "duplicate"
    events = await billing.billing_events(tenant, "billing.AccountStatusChanged", at_least=2)
    assert [e["payload"]["status"] for e in events] == ["suspended", "active"]


async def test_forged_tampered_and_stale_webhooks_are_refused_without_side_effects(billing: Billing) -> None:
    tenant = billing.tenant()
    plan = await billing.create_tenant(tenant, "pro")
    failed = stripe_event(
        "invoice.payment_failed",
        {"id": "in_x", "object": "invoice", "customer": plan["stripe"]["customer_id"]},
    )
    forged = await billing.webhook(failed, secret="whsec_attacker")
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_signature"
    body, headers = billing.signed(failed)
    tampered = await billing.client.post(
        "/webhooks/stripe", content=body.replace(b"in_x", b"in_y"), headers=headers
    )
    assert tampered.status_code == 400
    stale_header = headers["Stripe-Signature"].replace("t=", "t=1", 1)  # a timestamp long gone
    stale = await billing.client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": stale_header}
    )
    assert stale.status_code == 400
    missing = await billing.client.post("/webhooks/stripe", content=body)
    assert missing.status_code == 400
    assert (await billing.get_json(f"/v1/tenants/{tenant}/billing/plan"))["status"] == "active"  # type: ignore[index]
    assert await billing.runtime.db["stripe_webhook_events"].count_documents({"_id": failed["id"]}) == 0
    # The genuine delivery still works afterwards (nothing was marked as seen).
    assert (await billing.webhook(failed)).json()["status"] == "processed"


async def test_subscription_updates_are_followed_and_a_deleted_subscription_means_free(
    billing: Billing,
) -> None:
    tenant = billing.tenant()
    plan = await billing.create_tenant(tenant, "pro")
    sub = {
        "id": plan["stripe"]["subscription_id"],
        "object": "subscription",
        "customer": plan["stripe"]["customer_id"],
    }
    updated = await billing.webhook(
        stripe_event("customer.subscription.updated", {**sub, "status": "past_due"})
    )
    assert updated.json()["status"] == "processed"
    path = f"/v1/tenants/{tenant}/billing/plan"
    assert (await billing.get_json(path))["stripe"]["subscription_status"] == "past_due"  # type: ignore[index]
    deleted = await billing.webhook(
        stripe_event("customer.subscription.deleted", {**sub, "status": "canceled"})
    )
    assert deleted.json()["status"] == "processed"
    after = await billing.get_json(path)
    assert after["plan"] == "free" and after["stripe"]["subscription_status"] == "canceled"  # type: ignore[index]
    events = await billing.billing_events(tenant, "billing.PlanChanged", at_least=2)
    assert events[-1]["payload"]["changed_by"] == "stripe"
    unknown = await billing.webhook(stripe_event("customer.created", {"id": "cus_zzz", "object": "customer"}))
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"


async def test_a_payment_failure_suspends_only_after_the_grace_period(billing: Billing) -> None:
    """The module's app runs with grace 0; this builds the same webhook handling over the same
    database and Stripe account records with a 1 s grace period."""
    from billing.application.webhooks import WebhookService

    from .conftest import WEBHOOK_SECRET

    ports = billing.runtime.extras["billing"]
    service = WebhookService(ports.accounts.store, ports.accounts, WEBHOOK_SECRET, 300, grace_s=1.0)
    late, early = billing.tenant(), billing.tenant()
    customers = {t: (await billing.create_tenant(t, "pro"))["stripe"]["customer_id"] for t in (late, early)}
    for tenant in (late, early):
        failed = stripe_event(
            "invoice.payment_failed",
            {"id": f"in_{tenant}", "object": "invoice", "customer": customers[tenant]},
        )
        body, headers = billing.signed(failed)
        assert (await service.handle(body, headers["Stripe-Signature"])).status == "processed"
    assert await service.suspend_due() == 0  # within the grace period: still active
    paid = stripe_event(
        "invoice.paid", {"id": f"in_{early}", "object": "invoice", "customer": customers[early]}
    )
    body, headers = billing.signed(paid)
    await service.handle(body, headers["Stripe-Signature"])  # paid in time: never suspended

    async def late_status() -> str:
        await service.suspend_due()  # (the app's own loop may get there first: same records)
        return (await billing.get_json(f"/v1/tenants/{late}/billing/plan"))["status"]  # type: ignore[index]

    await billing.eventually(late_status, lambda s: s == "suspended", timeout_s=10)
    failure = await billing.runtime.db["payment_failures"].find_one({"tenant_id": late})
    [suspended] = await billing.billing_events(late, "billing.AccountStatusChanged", at_least=1)
    waited = datetime.fromisoformat(suspended["payload"]["at"]) - failure["failed_at"]  # type: ignore[index]
    assert waited.total_seconds() >= 1.0
    assert (await billing.get_json(f"/v1/tenants/{early}/billing/plan"))["status"] == "active"  # type: ignore[index]
    assert await billing.billing_events(early, "billing.AccountStatusChanged") == []


async def test_concurrent_plan_changes_and_duplicate_deliveries_apply_once(billing: Billing) -> None:
    tenant = billing.tenant()
    plan = await billing.create_tenant(tenant, "free")
    path = f"/v1/tenants/{tenant}/billing/plan"
    responses = await asyncio.gather(*(billing.client.put(path, json={"plan": "pro"}) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    events = await billing.billing_events(tenant, "billing.PlanChanged", at_least=2)
    assert [e["payload"]["plan"] for e in events] == ["free", "pro"]
    stripe_account = await billing.runtime.db["stripe_accounts"].find_one({"_id": tenant})
    assert stripe_account is not None and stripe_account["subscriptions_created"] == 1

    customer = (await billing.get_json(path))["stripe"]["customer_id"]  # type: ignore[index]
    assert plan["stripe"]["customer_id"] is None and customer.startswith("cus_")
    failed = stripe_event(
        "invoice.payment_failed", {"id": "in_dup", "object": "invoice", "customer": customer}
    )
    body, headers = billing.signed(failed)
    deliveries = await asyncio.gather(
        *(billing.client.post("/webhooks/stripe", content=body, headers=headers) for _ in range(4))
    )
    assert sorted(r.json()["status"] for r in deliveries) == ["duplicate"] * 3 + ["processed"]
    assert len(await billing.billing_events(tenant, "billing.AccountStatusChanged", at_least=1)) == 1
