"""Usage contracts: exact decimals (limits of MongoDB's Decimal128) and the batch event's rules."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from ailab_contracts.events.usage import (
    CANONICAL_BATCH_EVENTS,
    CanonicalUsageBatchPayload,
    UsageBatchEvent,
    UsageBatchRecorded,
    UsageRecorded,
    canonical_amounts,
)


def usage(**overrides: Any) -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "user_id": "usr_1",
        "meter": "tokens_in",
        "quantity": "1",
        "provider": "openai",
        "request_id": "req_1",
        "timestamp": "2026-11-27T12:00:00Z",
        **overrides,
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1250", Decimal(1250)),
        (" 0.5 ", Decimal("0.5")),
        (7, Decimal(7)),
        (Decimal("2.25"), Decimal("2.25")),
        ("0." + "0" * 17 + "1", Decimal("1e-18")),  # 18 places: the most allowed
        ("1.5" + "0" * 30, Decimal("1.5")),  # trailing zeros do not count as places
        ("9" * 16 + ".5", Decimal("9" * 16 + ".5")),  # 16 whole digits: the most allowed
        ("1E+3", Decimal(1000)),
    ],
)
def test_exact_decimals_accepted(given: Any, expected: Decimal) -> None:
    assert UsageRecorded.model_validate(usage(quantity=given)).quantity == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (0.5, "not as floats"),
        (True, "not a boolean"),
        ("abc", "is not a decimal number"),
        ("NaN", "NaN and Infinity"),
        ("Infinity", "NaN and Infinity"),
        ("0." + "0" * 18 + "1", "at most 18 decimal places"),
        ("1" * 17, "at most 16 digits before the decimal point"),
        ([1], "expected a decimal string"),
    ],
)
def test_inexact_or_oversized_decimals_refused(given: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        UsageRecorded.model_validate(usage(quantity=given))


def test_decimals_serialize_as_fixed_point_strings() -> None:
    event = UsageRecorded.model_validate(usage(quantity="1E+3", cost_usd_estimate="0.000001"))
    dumped = event.model_dump(mode="json")
    assert (dumped["quantity"], dumped["cost_usd_estimate"]) == ("1000", "0.000001")


def test_batch_items_carry_their_own_event_ids_and_one_tenant() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    batch = UsageBatchRecorded.model_validate(
        {
            "tenant_id": "acme",
            "events": [usage(event_id=str(first)), usage(event_id=str(second), quantity="2")],
        }
    )
    assert [e.event_id for e in batch.events] == [str(first), str(second)]
    assert sum(e.quantity for e in batch.events) == 3
    with pytest.raises(ValidationError, match=r"events\[1\].tenant_id 'other' is not 'acme'"):
        UsageBatchRecorded.model_validate(
            {
                "tenant_id": "acme",
                "events": [usage(event_id=str(first)), usage(event_id=str(second), tenant_id="other")],
            }
        )
    with pytest.raises(ValidationError, match="cannot be negative"):
        UsageBatchRecorded.model_validate(
            {"tenant_id": "acme", "events": [usage(event_id=str(first), quantity="-1")]}
        )
    with pytest.raises(ValidationError):
        UsageBatchRecorded.model_validate({"tenant_id": "acme", "events": []})
    with pytest.raises(ValidationError, match="pattern"):  # ids travel in canonical lowercase form
        upper = [usage(event_id=str(first).upper())]
        UsageBatchRecorded.model_validate({"tenant_id": "acme", "events": upper})


# --- the canonical wire form (the fast path of the bulk API and the usage consumer) ---------------

_DECIMAL_FIELDS = ("quantity", "cost_usd_estimate")
_NOT_RULES = ("title", "description", "examples", "default")


def _rules(schema: Any) -> Any:
    """A JSON schema without its prose (titles, descriptions, examples, defaults)."""
    if isinstance(schema, dict):
        return {k: _rules(v) for k, v in schema.items() if k not in _NOT_RULES}
    if isinstance(schema, list):
        return [_rules(v) for v in schema]
    return schema


def test_the_canonical_form_has_the_models_fields_and_rules() -> None:
    """Field by field, the same schema as `UsageBatchEvent` (so the fast path cannot accept what the
    model refuses), except decimals: plain fixed-point text of at most 16 characters there."""
    model = _rules(UsageBatchEvent.model_json_schema())
    canonical_schema = CANONICAL_BATCH_EVENTS.json_schema()
    canonical = _rules(canonical_schema["$defs"]["CanonicalUsageBatchEvent"])
    assert canonical_schema["items"] == {"$ref": "#/$defs/CanonicalUsageBatchEvent"}
    assert canonical["additionalProperties"] is False and model["additionalProperties"] is False
    assert set(canonical["required"]) == set(model["required"])
    assert set(canonical["properties"]) == set(model["properties"])
    for name, rules in model["properties"].items():
        if name in _DECIMAL_FIELDS:
            continue
        assert canonical["properties"][name] == rules, name
    text = {"type": "string", "maxLength": 16, "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
    assert canonical["properties"]["quantity"] == text
    assert canonical["properties"]["cost_usd_estimate"] == {"anyOf": [text, {"type": "null"}]}


def test_the_canonical_payload_has_the_batch_models_fields_and_rules() -> None:
    model = _rules(UsageBatchRecorded.model_json_schema())
    canonical = _rules(TypeAdapter(CanonicalUsageBatchPayload).json_schema())
    assert canonical["additionalProperties"] is False and model["additionalProperties"] is False
    assert canonical["required"] == model["required"] == ["tenant_id", "events"]
    assert canonical["properties"]["tenant_id"] == model["properties"]["tenant_id"]
    events, model_events = canonical["properties"]["events"], model["properties"]["events"]
    assert events.pop("items") == {"$ref": "#/$defs/CanonicalUsageBatchEvent"}
    assert model_events.pop("items") == {"$ref": "#/$defs/UsageBatchEvent"}
    assert events == model_events  # the same list limits


def _fast(event: dict[str, Any], as_json: bool) -> dict[str, Any] | None:
    """The fast path's outcome: the event with decimal values, or None when it refuses it."""
    try:
        if as_json:
            (checked,) = CANONICAL_BATCH_EVENTS.validate_json(json.dumps([event]))
        else:
            (checked,) = CANONICAL_BATCH_EVENTS.validate_python([event])
    except ValidationError:
        return None
    amounts = canonical_amounts(checked)
    if amounts is None:
        return None
    return {**checked, "quantity": amounts[0], "cost_usd_estimate": amounts[1]}


def _by_model(event: dict[str, Any], as_json: bool) -> dict[str, Any] | None:
    try:
        if as_json:
            return UsageBatchEvent.model_validate_json(json.dumps(event)).model_dump()
        return UsageBatchEvent.model_validate(event).model_dump()
    except ValidationError:
        return None


_EVENT_ID = "0b7e3c1a-5d2f-5e4a-9c8b-1f2e3d4c5b6a"
# Values worth trying per field: valid ones, edge cases of each rule, and wrong types.
_VALUES: dict[str, list[Any]] = {
    "event_id": [_EVENT_ID, _EVENT_ID.upper(), "x", "", 5],
    "tenant_id": ["acme", "", None, 1],
    "user_id": ["usr_1", "", None],
    "project_id": ["prj_1", None, 3],
    "agent_id": ["agt_1", None],
    "run_id": ["run_1", None],
    "tool_id": [None, "tool_1"],
    "meter": ["tokens_in", "storage_mb", "requests", "nope", None],
    "quantity": [
        "1",
        "0",
        "-0",
        "-1",
        "-2.5",
        "0.000001",
        "9" * 16,
        "9" * 17,
        "9" * 16 + ".5",
        " 5",
        "1e3",
        "1.",
        ".5",
        "NaN",
        "Infinity",
        "٣",
        5,
        2.5,
        True,
        None,
        "0." + "0" * 14 + "1",
    ],
    "cost_usd_estimate": ["0.001", b"1", None, "-1", "1e-3", 0.1, "x", "1" * 16],
    "provider": ["openai", "internal", "other", None],
    "model": ["gpt-4o", None, "m" * 200, "m" * 201],
    "request_id": ["req_1", "", "r" * 200, "r" * 201],
    "timestamp": [
        "2026-11-27T12:00:00Z",
        "2026-11-27T12:00:00.123456+02:00",
        "2026-11-27T12:00:00",
        "2026-11-27 12:00:00Z",
        1764244800,
        "yesterday",
        None,
    ],
    "dimensions": [
        {},
        {"a": 1},
        {"b": "x" * 501},
        {"c": 2**63},
        {"d": float("inf")},
        {"1bad": 1},
        {"ok_key": True, "f": 1.5},
        [1],
    ],
    "extra": ["surprise"],
}
_OPTIONAL = (
    "project_id",
    "agent_id",
    "run_id",
    "tool_id",
    "cost_usd_estimate",
    "model",
    "dimensions",
    "extra",
)


@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(_VALUES)),
        st.integers(min_value=0, max_value=30),
        max_size=4,
    ),
    dropped=st.sets(st.sampled_from(sorted(_VALUES)), max_size=2),
    as_json=st.booleans(),
)
@settings(max_examples=600, deadline=None)
def test_what_the_canonical_form_accepts_the_model_accepts_with_the_same_values(
    changes: dict[str, int], dropped: set[str], as_json: bool
) -> None:
    event = {**usage(), "event_id": _EVENT_ID, "cost_usd_estimate": "0.25", "model": "gpt-4o"}
    for name, pick in changes.items():
        values = _VALUES[name]
        event[name] = values[pick % len(values)]
    for name in dropped:
        event.pop(name, None)
    if as_json:
        try:
            json.dumps(event, allow_nan=False)
        except (TypeError, ValueError):
            as_json = False  # bytes, NaN and Infinity are not JSON: the Python path only
    fast = _fast(event, as_json)
    if fast is None:
        return  # refused by the fast path: the model decides (and says why)
    by_model = _by_model(event, as_json)
    assert by_model is not None, event
    expected = {name: None for name in _OPTIONAL if name not in ("dimensions", "extra")}
    assert by_model == {**expected, "dimensions": {}, **fast}


def test_the_api_s_usual_events_take_the_fast_path() -> None:
    for event in (
        {**usage(), "event_id": _EVENT_ID},
        {**usage(quantity="-10.5", meter="storage_mb"), "event_id": _EVENT_ID, "dimensions": {"x": 1}},
        {**usage(quantity="0.000001"), "event_id": _EVENT_ID, "cost_usd_estimate": "0.00125", "model": "m"},
    ):
        for as_json in (False, True):
            assert _fast(event, as_json) is not None
    assert _fast({**usage(quantity="-1"), "event_id": _EVENT_ID}, False) is None  # the model's sign rule
    assert _fast({**usage(quantity=b"5"), "event_id": _EVENT_ID}, False) is None  # the model refuses bytes
    assert _fast({**usage(), "event_id": _EVENT_ID, "dimensions": {"d": float("nan")}}, False) is None
