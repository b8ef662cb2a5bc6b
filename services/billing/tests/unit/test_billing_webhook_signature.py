"""Stripe-Signature verification with headers made by the Stripe SDK's own signing helper."""

from __future__ import annotations

import json
import time

import pytest
import stripe

from ailab_runtime.errors import ApiError
from billing.application.webhooks import WebhookService

pytestmark = pytest.mark.unit

SECRET = "whsec_unit_test"
PAYLOAD = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": {}}})


def _service() -> WebhookService:
    return WebhookService(store=None, accounts=None, secret=SECRET, tolerance_s=300, grace_s=0)  # type: ignore[arg-type]


def _header(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload}", secret)  # noqa: SLF001
    return f"t={timestamp},v1={signature}"


def test_a_payload_signed_by_the_sdk_is_accepted() -> None:
    header = stripe.WebhookSignature.generate_signature_header(PAYLOAD, SECRET)  # type: ignore[attr-defined]
    assert _service().verify(PAYLOAD.encode(), header)["id"] == "evt_1"


@pytest.mark.parametrize(
    ("payload", "header"),
    [
        (PAYLOAD, _header(PAYLOAD, secret="whsec_forged")),  # forged: another secret
        (PAYLOAD.replace("invoice.paid", "invoice.payment_failed"), _header(PAYLOAD)),  # tampered
        (PAYLOAD, _header(PAYLOAD, timestamp=int(time.time()) - 3600)),  # replayed after the window
        (PAYLOAD, "t=1,v1="),
        (PAYLOAD, None),
    ],
    ids=["forged", "tampered", "expired", "garbage", "missing"],
)
def test_forged_tampered_and_replayed_payloads_are_refused(payload: str, header: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        _service().verify(payload.encode(), header)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_signature"
