"""Usage contracts: exact decimals (limits of MongoDB's Decimal128) and the batch event's rules."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from ailab_contracts.events.usage import UsageBatchRecorded, UsageRecorded


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
