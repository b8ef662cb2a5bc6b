"""Optional: the Stripe adapter against Stripe's real test mode. Runs only when `STRIPE_API_KEY`
holds a test key (`sk_test_...`); skipped otherwise (CI and local runs use stripe-mock)."""

from __future__ import annotations

import os
import uuid

import pytest

from billing.adapters.stripe_api import StripeApi, StripeFailure
from billing.config import DEV_STRIPE_API_KEY

KEY = os.environ.get("STRIPE_API_KEY", "")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not KEY.startswith("sk_test_") or KEY == DEV_STRIPE_API_KEY,
        reason="STRIPE_API_KEY (a real test-mode key, not the stripe-mock placeholder) is not set",
    ),
]


async def test_idempotent_customer_and_meter_event_in_stripe_test_mode() -> None:
    api = StripeApi(KEY, "https://api.stripe.com")
    tenant = f"ten_{uuid.uuid4().hex[:10]}"
    key = f"ailab-customer-{tenant}"
    first = await api.create_customer(tenant, tenant, key)
    again = await api.create_customer(tenant, tenant, key)
    assert first == again  # same idempotency key: the same customer, not a second one
    # Meter events need the meter (event name `ailab_tokens_in`) to exist in the account.
    try:
        sent = await api.send_meter_event("ailab_tokens_in", first, "10", f"{tenant}:2026-11-26:tokens_in", 0)
    except StripeFailure as exc:
        pytest.skip(f"no `ailab_tokens_in` meter in this Stripe account: {exc}")
    assert sent["identifier"] == f"{tenant}:2026-11-26:tokens_in"
