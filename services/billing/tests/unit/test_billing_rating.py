"""Rating in exact decimals: hand-computed invoices, one rounding at the end, storage as GB-month."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.domain.plans import PLANS
from billing.domain.rating import rate_period, text

pytestmark = pytest.mark.unit


def _lines(invoice):  # type: ignore[no-untyped-def]
    return {line.meter or "base": line for line in invoice.lines}


def test_pro_invoice_equals_the_hand_computation() -> None:
    totals = {"tokens_in": Decimal("125000"), "tokens_out": Decimal("40000"), "requests": Decimal("12")}
    invoice = rate_period(PLANS["pro"], "2026-11", totals, storage_level_mb=Decimal(0))
    lines = _lines(invoice)
    # 29 + 125000 × 0.000001 + 40000 × 0.000002 = 29 + 0.125 + 0.08 = 29.205 → 29.21 (half up)
    assert lines["base"].amount_usd == Decimal("29")
    assert lines["tokens_in"].amount_usd == Decimal("0.125")
    assert lines["tokens_out"].amount_usd == Decimal("0.08")
    assert invoice.subtotal_usd == Decimal("29.205")
    assert invoice.total_usd == Decimal("29.21")
    assert invoice.rounding_adjustment_usd == Decimal("0.005")
    assert "requests" not in lines  # no rate for requests: not billed


def test_totals_are_rounded_once_not_per_line() -> None:
    # Each line is 0.004 (would round to 0.00 per line); the sum 0.012 rounds to 0.01.
    totals = {"tokens_in": Decimal("4000"), "tokens_out": Decimal("2000")}
    invoice = rate_period(PLANS["pro"], "2026-11", totals, storage_level_mb=Decimal("40.96"))
    lines = _lines(invoice)
    assert lines["tokens_in"].amount_usd == Decimal("0.004")
    assert lines["tokens_out"].amount_usd == Decimal("0.004")
    # 40.96 MB = 0.04 GB × 0.10 = 0.004
    assert lines["storage_mb"].billing_quantity == Decimal("0.04")
    assert lines["storage_mb"].amount_usd == Decimal("0.004")
    assert invoice.subtotal_usd == Decimal("29.012")
    assert invoice.total_usd == Decimal("29.01")


def test_storage_is_rated_on_the_level_and_egress_per_gb() -> None:
    totals = {"storage_mb": Decimal("-100"), "egress_mb": Decimal("2048")}
    invoice = rate_period(PLANS["enterprise"], "2026-11", totals, storage_level_mb=Decimal("5120"))
    lines = _lines(invoice)
    assert lines["storage_mb"].quantity == Decimal("5120")  # the level, not the month's net delta
    assert lines["storage_mb"].amount_usd == Decimal("0.25")  # 5 GB × 0.05
    assert lines["egress_mb"].amount_usd == Decimal("0.04")  # 2 GB × 0.02
    assert invoice.total_usd == Decimal("299.29")


def test_free_plan_has_no_metered_lines_and_costs_nothing() -> None:
    invoice = rate_period(PLANS["free"], "2026-11", {"tokens_in": Decimal("99999")}, Decimal("10"))
    assert [line.kind for line in invoice.lines] == ["base"]
    assert invoice.total_usd == Decimal("0.00")


def test_huge_quantities_stay_exact() -> None:
    totals = {"tokens_in": Decimal("123456789012345678901234.123456789")}
    invoice = rate_period(PLANS["pro"], "2026-11", totals, Decimal(0))
    assert _lines(invoice)["tokens_in"].amount_usd == Decimal("123456789012345678.901234123456789")


def test_decimal_text_is_fixed_point() -> None:
    assert text(Decimal("29.000")) == "29"
    assert text(Decimal("1E-7")) == "0.0000001"
    assert text(Decimal("0.1250")) == "0.125"


def test_sync_retries_back_off_exponentially_up_to_a_cap() -> None:
    from billing.application.usage_sync import SyncSettings

    settings = SyncSettings("ailab_", max_attempts=8, backoff_s=30, backoff_max_s=3600)
    assert [settings.next_attempt_delay(n) for n in range(0, 9)] == [
        3.0,
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]
