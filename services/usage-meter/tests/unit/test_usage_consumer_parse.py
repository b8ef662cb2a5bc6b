"""The consumer's parse of `usage.UsageRecorded` records: the hot path equals the registry's full
parse, and a record whose envelope and payload tenants differ is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.usage import UsageRecorded
from usage_meter.adapters.kafka_usage import Rejected, entry_from

pytestmark = pytest.mark.unit


def wire(tenant: str = "acme", envelope_tenant: str = "acme") -> dict[str, object]:
    event = UsageRecorded(
        tenant_id=tenant,
        user_id="u1",
        meter="tokens_out",
        quantity=Decimal("12.5"),
        cost_usd_estimate=Decimal("0.0001"),
        provider="anthropic",
        model="claude-3.5",
        request_id="req_1",
        timestamp=datetime(2026, 11, 27, 10, tzinfo=UTC),
    )
    return new_envelope(
        REGISTRY, event, stream_id="run:1", stream_version=1, tenant_id=envelope_tenant, producer="test"
    ).to_wire()


def test_hot_path_equals_the_full_registry_parse() -> None:
    raw = wire()
    fast = entry_from(REGISTRY, raw)
    envelope, payload = REGISTRY.parse(raw)
    assert fast.event_id == str(envelope.event_id)
    assert (fast.quantity, fast.cost, fast.meter, fast.model) == (
        payload.quantity,  # type: ignore[attr-defined]
        payload.cost_usd_estimate,  # type: ignore[attr-defined]
        "tokens_out",
        "claude-3.5",
    )
    assert fast.day == "2026-11-27" and fast.month == "2026-11"


def test_envelope_and_payload_tenants_must_agree() -> None:
    with pytest.raises(Rejected) as info:
        entry_from(REGISTRY, wire(tenant="acme", envelope_tenant="globex"))
    assert info.value.reason == "tenant_mismatch"


def test_a_bad_event_id_is_an_error() -> None:
    raw = {**wire(), "event_id": "not-a-uuid"}
    with pytest.raises(ValueError):
        entry_from(REGISTRY, raw)
