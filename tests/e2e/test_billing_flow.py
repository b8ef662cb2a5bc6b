"""Billing through the gateway: a plan change reaches the gateway's tenant (limits), Stripe webhooks
signed with the endpoint secret suspend and restore a tenant, a replay does nothing, and forged
ones are refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import E2E_WEBHOOK_SECRET, System
from tests.e2e.helpers import client, eventually, new_tenant_with_admin
from tests.support.stripe_events import signed_delivery, stripe_event

pytestmark = pytest.mark.e2e


def post_webhook(system: System, event: dict[str, Any], secret: str = E2E_WEBHOOK_SECRET) -> httpx.Response:
    body, headers = signed_delivery(event, secret)
    return httpx.post(f"{system.url}/webhooks/stripe", content=body, headers=headers)


def test_plan_change_and_payment_webhooks_reach_the_tenant(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="free")
    owner = client(system.url, owner_token)
    # billing learns the tenant from tenancy.TenantCreated
    plan = eventually(
        lambda: (r := owner.get(f"/v1/tenants/{tenant_id}/billing/plan")).status_code == 200 and r
    )
    assert plan.json()["plan"] == "free"

    upgraded = owner.put(f"/v1/tenants/{tenant_id}/billing/plan", json={"plan": "pro"})
    assert upgraded.status_code == 200, upgraded.text
    customer = upgraded.json()["stripe"]["customer_id"]
    assert customer and customer.startswith("cus_")
    # billing.PlanChanged → the gateway's tenant has the pro plan and limits
    tenant = eventually(
        lambda: (t := owner.get(f"/v1/tenants/{tenant_id}").json())["plan"] == "pro" and t, timeout_s=30
    )
    assert tenant["limits"]["max_projects"] == 50 and tenant["limits"]["max_requests_per_month"] == 50000

    forged = post_webhook(
        system, stripe_event("invoice.payment_failed", {"id": "in_1", "customer": customer}), "whsec_wrong"
    )
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "invalid_signature"

    failed = stripe_event(
        "invoice.payment_failed",
        {"id": "in_e2e1", "object": "invoice", "customer": customer, "status": "open"},
    )
    reply = post_webhook(system, failed)
    assert reply.status_code == 200, reply.text and reply.json()["status"] == "processed"
    eventually(lambda: owner.get(f"/v1/tenants/{tenant_id}/projects").status_code == 403, timeout_s=30)
    refused = owner.get(f"/v1/tenants/{tenant_id}/projects")
    assert refused.json()["error"]["code"] == "tenant_suspended"
    assert admin.get(f"/v1/admin/tenants/{tenant_id}").json()["status"] == "suspended"

    replay = post_webhook(system, failed)  # the same event again, freshly signed
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"

    paid = stripe_event(
        "invoice.paid", {"id": "in_e2e1", "object": "invoice", "customer": customer, "status": "paid"}
    )
    assert post_webhook(system, paid).status_code == 200
    eventually(lambda: owner.get(f"/v1/tenants/{tenant_id}/projects").status_code == 200, timeout_s=30)
    assert admin.get(f"/v1/admin/tenants/{tenant_id}").json()["status"] == "active"


def test_billing_routes_follow_the_permission_matrix(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="free")
    owner = client(system.url, owner_token)
    eventually(lambda: owner.get(f"/v1/tenants/{tenant_id}/billing/plan").status_code == 200)
    # a tenant admin may not reconcile the platform
    assert owner.get("/v1/admin/billing/reconcile", params={"month": "2026-11"}).status_code == 403
    assert admin.get("/v1/admin/billing/reconcile", params={"month": "2026-11"}).status_code == 200
    assert owner.get(f"/v1/tenants/{tenant_id}/billing/invoices").status_code == 200
    preview = owner.get(f"/v1/tenants/{tenant_id}/billing/invoices/preview")
    assert preview.status_code == 200, preview.text


def test_a_platform_admins_plan_change_goes_through_billing(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="pro")
    owner = client(system.url, owner_token)
    changed = admin.put(f"/v1/admin/tenants/{tenant_id}", json={"plan": "enterprise"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["plan"] == "enterprise" and changed.json()["limits"]["max_projects"] == -1
    billing_plan = owner.get(f"/v1/tenants/{tenant_id}/billing/plan").json()
    assert billing_plan["plan"] == "enterprise"
    # 4 projects do not fit the free plan (3): billing refuses the downgrade, nothing changes
    for i in range(4):
        assert owner.post(f"/v1/tenants/{tenant_id}/projects", json={"name": f"p{i}"}).status_code == 201
    # billing counts projects from the registry's events
    eventually(
        lambda: owner.get(f"/v1/tenants/{tenant_id}/billing/plan").json()["usage"]["projects"] == 4,
        timeout_s=30,
    )
    refused = admin.put(f"/v1/admin/tenants/{tenant_id}", json={"plan": "free"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "plan_limits_exceeded"
    assert admin.get(f"/v1/admin/tenants/{tenant_id}").json()["plan"] == "enterprise"


def test_a_pro_tenants_runs_are_charged_through_stripe_and_reconcile_to_zero(system: System) -> None:
    from decimal import Decimal

    from tests.e2e.test_usage_flow import agent_with_flow, daily_meters, start_run, today

    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="pro")
    owner = client(system.url, owner_token)
    plan = eventually(
        lambda: (
            (r := owner.get(f"/v1/tenants/{tenant_id}/billing/plan")).status_code == 200
            and r.json()["stripe"]["customer_id"]
            and r.json()
        ),
        timeout_s=30,
    )
    assert plan["plan"] == "pro"
    agent_id = agent_with_flow(owner, tenant_id)
    runs = []
    for _ in range(3):
        runs.append(
            eventually(lambda: (r := start_run(owner, tenant_id, agent_id)).status_code == 201 and r.json())
        )
    for run in runs:
        eventually(
            lambda run=run: (
                owner.get(f"/v1/tenants/{tenant_id}/runs/{run['id']}").json()["status"] == "succeeded"
            ),
            timeout_s=30,
        )
    # the fake OpenAI server counts words: 5 prompt and 6 completion tokens per run
    eventually(
        lambda: (
            (m := daily_meters(owner, tenant_id)).get("tokens_out")
            and Decimal(str(m["tokens_out"]["quantity"])) == 18
            and Decimal(str(m["tokens_in"]["quantity"])) == 15
        ),
        timeout_s=30,
    )
    day, month = today(), today()[:7]
    closed = admin.post("/v1/admin/usage/days/close", json={"tenant_id": tenant_id, "day": day})
    assert closed.status_code == 202, closed.text

    def synced_day() -> dict | None:
        usage = owner.get(f"/v1/tenants/{tenant_id}/billing/usage", params={"month": month}).json()
        days = [d for d in usage.get("days", []) if d["day"] == day]
        return days[0] if days and days[0]["stripe_sync_status"] == "synced" else None

    synced = eventually(synced_day, timeout_s=60)
    sent = {e["identifier"]: Decimal(e["value"]) for e in synced["stripe_meter_events"]}
    assert sent[f"{tenant_id}:{day}:tokens_in"] == 15
    assert sent[f"{tenant_id}:{day}:tokens_out"] == 18
    events_by_name = {e["event_name"] for e in synced["stripe_meter_events"]}
    assert {"ailab_tokens_in", "ailab_tokens_out"} <= events_by_name

    preview = owner.get(f"/v1/tenants/{tenant_id}/billing/invoices/preview", params={"month": month}).json()
    # by hand: $29 base + 15 × $0.000001 + 18 × $0.000002 = $29.000051 → $29.00, rounded once
    assert Decimal(preview["subtotal_usd"]) == Decimal("29.000051")
    assert Decimal(preview["total_usd"]) == Decimal("29.00")
    lines = {line["meter"]: Decimal(line["amount_usd"]) for line in preview["lines"] if line["meter"]}
    assert lines["tokens_in"] == Decimal("0.000015") and lines["tokens_out"] == Decimal("0.000036")

    reconciled = admin.get(
        "/v1/admin/billing/reconcile", params={"month": month, "tenant_id": tenant_id}
    ).json()
    assert reconciled["difference_count"] == 0, reconciled["differences"]
    mine = next(t for t in reconciled["tenants"] if t["tenant_id"] == tenant_id)
    tokens_in = next(m for m in mine["meters"] if m["meter"] == "tokens_in")
    assert (
        Decimal(tokens_in["usage_meter"])
        == Decimal(tokens_in["rated"])
        == Decimal(tokens_in["sent_to_stripe"])
        == 15
    )
