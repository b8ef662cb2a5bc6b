"""Stripe webhook deliveries for tests: an event as Stripe sends it, signed as Stripe signs it.

stripe-mock does not send webhooks, so the billing integration tests and the e2e billing flow build the
deliveries themselves; both must look exactly like Stripe's for billing's signature check and
replay detection to be exercised for real.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import stripe


def stripe_event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A Stripe event of type `kind` about `obj` (fresh `evt_` id, the SDK's API version)."""
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": int(time.time()),
        "type": kind,
        "livemode": False,
        "data": {"object": obj},
    }


def signed_delivery(event: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a webhook delivery of `event`, signed now with the endpoint `secret`."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret)  # type: ignore[attr-defined]
    return payload.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}
