"""The consumer's decoding of usage records: `usage.UsageRecorded` (the hot path equals the registry's
full parse; envelope and payload tenants must agree) and `usage.UsageBatchRecorded` (each item its
own event; bad items reported by index while the good ones count; an id twice counts once)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.usage import UsageBatchRecorded, UsageRecorded
from usage_meter.adapters.mongo_store import (
    _stored_before,
    chunk_doc,
    chunk_rows,
    compress_record,
    index_ranges,
    ledger_row,
    parse_index_ranges,
    record_chunk_doc,
)
from usage_meter.adapters.usage_records import Rejected, decode, decode_batch_bytes, entry_from
from usage_meter.domain.model import AcceptanceRules

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


RECEIVED = datetime(2026, 11, 27, 10, 5, tzinfo=UTC)


def item(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.UUID(int=n)),
        "tenant_id": "acme",
        "user_id": f"u{n}",
        "meter": "tokens_in",
        "quantity": str(n),
        "provider": "openai",
        "request_id": f"req_{n}",
        "timestamp": "2026-11-27T10:00:00Z",
        **overrides,
    }


def batch_wire(items: list[dict[str, Any]], tenant: str = "acme") -> dict[str, Any]:
    batch = UsageBatchRecorded.model_validate({"tenant_id": "acme", "events": [item(999)]})
    wire = new_envelope(
        REGISTRY, batch, stream_id="usage-bulk:acme:r1", stream_version=1, tenant_id="acme", producer="test"
    ).to_wire()
    wire["payload"] = {"tenant_id": tenant, "events": items}  # exactly as sent, bad items included
    return wire


def test_a_batch_record_yields_one_entry_per_item_with_its_own_id_and_payload() -> None:
    decoded = decode(REGISTRY, batch_wire([item(1), item(2)]), AcceptanceRules(), RECEIVED)
    assert [e.event_id for e in decoded.entries] == [str(uuid.UUID(int=1)), str(uuid.UUID(int=2))]
    assert [e.quantity for e in decoded.entries] == [Decimal(1), Decimal(2)]
    assert decoded.entries[1].payload == item(2)
    assert decoded.problems == [] and decoded.repeated == 0


def test_bad_items_are_reported_by_index_and_the_others_count() -> None:
    items = [
        item(1),
        item(2, meter="bananas"),
        item(3, tenant_id="globex"),
        item(4, timestamp=(RECEIVED - timedelta(days=3)).isoformat()),
        item(5),
        item(1, quantity="100"),  # the same id again: counted once, the first wins
    ]
    decoded = decode(REGISTRY, batch_wire(items), AcceptanceRules(), RECEIVED)
    assert [e.quantity for e in decoded.entries] == [Decimal(1), Decimal(5)]
    assert [(index, reason) for index, reason, _ in decoded.problems] == [
        (1, "invalid_event"),
        (2, "invalid_event"),
        (3, "timestamp_too_old"),
    ]
    assert "meter" in decoded.problems[0][2] and "globex" in decoded.problems[1][2]
    assert decoded.repeated == 1


def test_a_batch_whose_payload_tenant_is_not_the_envelopes_is_refused_whole() -> None:
    with pytest.raises(Rejected) as info:
        decode(REGISTRY, batch_wire([item(1)], tenant="globex"), AcceptanceRules(), RECEIVED)
    assert info.value.reason == "tenant_mismatch"


def test_a_single_event_record_outside_the_window_is_a_problem_not_an_entry() -> None:
    late = decode(REGISTRY, wire(), AcceptanceRules(), RECEIVED + timedelta(days=3))
    assert late.entries == [] and late.problems[0][1] == "timestamp_too_old"
    on_time = decode(REGISTRY, wire(), AcceptanceRules(), RECEIVED)
    assert len(on_time.entries) == 1 and on_time.entries[0].payload is not None


def as_bytes(raw: dict[str, Any]) -> bytes:
    return json.dumps(raw).encode()


def test_a_valid_batch_decoded_from_its_bytes_equals_the_dict_decoding() -> None:
    items = [item(1), item(2, project_id="prj_1", cost_usd_estimate="0.25"), item(1, quantity="100")]
    items.append(item(4, timestamp=(RECEIVED - timedelta(days=3)).isoformat()))  # too old
    raw = batch_wire(items)
    value = as_bytes(raw)
    fast = decode_batch_bytes(REGISTRY, value, AcceptanceRules(), RECEIVED)
    slow = decode(REGISTRY, raw, AcceptanceRules(), RECEIVED)
    assert fast is not None
    assert fast.entries == slow.entries  # every field but the payload's form
    assert (fast.problems, fast.repeated) == (slow.problems, slow.repeated)
    assert [p[:2] for p in fast.problems] == [(3, "timestamp_too_old")] and fast.repeated == 1
    # The entries point into the record's bytes; its chunk stores those bytes once, with the
    # positions of the events it owns, and reads back exactly the rows the dict decoding stores.
    assert [e.payload for e in fast.entries] == [(value, 0), (value, 1)]
    positions = [e.payload[1] for e in fast.entries if isinstance(e.payload, tuple)]
    at = datetime.now(UTC)
    stored = chunk_rows(record_chunk_doc((0, 7), "acme", "2026-11-27", compress_record(value), positions, at))
    rows = chunk_rows(chunk_doc((0, 7), "acme", "2026-11-27", [ledger_row(e) for e in slow.entries], at))
    assert stored == rows == [items[0], items[1]]
    assert [row["event_id"] for row in stored] == [str(uuid.UUID(int=1)), str(uuid.UUID(int=2))]
    with pytest.raises(TypeError):
        ledger_row(fast.entries[0])  # a record's event is stored with its record, not as a row


@pytest.mark.parametrize(
    ("indexes", "text"),
    [([], ""), ([0], "0"), (list(range(1000)), "0-999"), ([0, 1, 2, 5, 7, 8, 10], "0-2,5,7-8,10")],
)
def test_chunk_positions_are_written_as_ranges_and_read_back(indexes: list[int], text: str) -> None:
    assert index_ranges(indexes) == text
    assert parse_index_ranges(text) == indexes


def test_a_batch_with_a_bad_item_or_of_another_version_is_left_to_the_dict_decoding() -> None:
    bad = batch_wire([item(1), item(2, meter="bananas")])
    assert decode_batch_bytes(REGISTRY, as_bytes(bad), AcceptanceRules(), RECEIVED) is None
    other_version = {**batch_wire([item(1)]), "schema_version": 99}
    assert decode_batch_bytes(REGISTRY, as_bytes(other_version), AcceptanceRules(), RECEIVED) is None
    assert decode_batch_bytes(REGISTRY, b"not json", AcceptanceRules(), RECEIVED) is None
    assert decode_batch_bytes(REGISTRY, as_bytes(wire()), AcceptanceRules(), RECEIVED) is None
    for breaks_a_rule in (
        item(2, quantity="-1"),
        item(2, tenant_id="globex"),
        item(2, dimensions={"d": 2**64}),
    ):
        raw = batch_wire([item(1), breaks_a_rule])
        assert decode_batch_bytes(REGISTRY, as_bytes(raw), AcceptanceRules(), RECEIVED) is None
        assert [p[0] for p in decode(REGISTRY, raw, AcceptanceRules(), RECEIVED).problems] == [1]


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        (5, Decimal(5)),
        (" 5", Decimal(5)),
        ("1E+3", Decimal(1000)),
        ("9" * 16 + ".5", Decimal("9" * 16 + ".5")),
    ],
)
def test_a_valid_batch_not_in_the_canonical_form_is_left_to_the_dict_decoding(
    quantity: Any, expected: Decimal
) -> None:
    """Valid for the contract, but not as the bulk API writes it: the models decide, and count it."""
    raw = batch_wire([item(1), item(2, quantity=quantity)])
    assert decode_batch_bytes(REGISTRY, as_bytes(raw), AcceptanceRules(), RECEIVED) is None
    decoded = decode(REGISTRY, raw, AcceptanceRules(), RECEIVED)
    assert [e.quantity for e in decoded.entries] == [Decimal(1), expected] and decoded.problems == []


def test_a_batch_from_bytes_whose_payload_tenant_is_not_the_envelopes_is_refused_whole() -> None:
    with pytest.raises(Rejected) as info:
        decode_batch_bytes(
            REGISTRY,
            as_bytes(batch_wire([item(1, tenant_id="globex")], tenant="globex")),
            AcceptanceRules(),
            RECEIVED,
        )
    assert info.value.reason == "tenant_mismatch"


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_an_item_whose_timestamp_cannot_be_brought_to_utc_is_a_timing_problem_of_its_own(
    timestamp: str,
) -> None:
    """Its record's other items still count, on either decoding, and the problem shows the
    timestamp as sent."""
    raw = batch_wire([item(1), item(2, timestamp=timestamp)])
    fast = decode_batch_bytes(REGISTRY, as_bytes(raw), AcceptanceRules(), RECEIVED)
    slow = decode(REGISTRY, raw, AcceptanceRules(), RECEIVED)
    assert fast is not None
    for decoded in (fast, slow):
        assert [e.event_id for e in decoded.entries] == [str(uuid.UUID(int=1))]
        assert [(i, reason) for i, reason, _ in decoded.problems] == [
            (1, "timestamp_too_old" if timestamp.startswith("0001") else "timestamp_in_future")
        ]
        assert decoded.problems[0][2] == f"timestamp {datetime.fromisoformat(timestamp).isoformat()}"


def test_an_insert_s_duplicates_come_back_and_any_other_outcome_is_raised() -> None:
    docs: list[dict[str, Any]] = [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}]
    assert _stored_before(docs, {"writeErrors": [{"index": 1, "code": 11000}], "nInserted": 2}) == ["b"]
    assert _stored_before(docs, {"writeErrors": [], "writeConcernErrors": []}) == []
    for outcome in (
        {"writeErrors": [{"index": 0, "code": 11000}, {"index": 2, "code": 53}]},
        {
            "writeErrors": [{"index": 0, "code": 11000}],
            "writeConcernErrors": [{"code": 64, "errmsg": "wtimeout"}],
        },
    ):
        with pytest.raises(BulkWriteError) as info:
            _stored_before(docs, outcome)
        assert info.value.details == outcome
