"""Plan configuration: the specification's prices, rates and limits, downgrade checks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.domain.plans import PLANS, limit_violations

pytestmark = pytest.mark.unit


def test_prices_and_rates_are_the_specifications() -> None:
    assert {name: p.base_price_usd for name, p in PLANS.items()} == {
        "free": Decimal(0),
        "pro": Decimal(29),
        "enterprise": Decimal(299),
    }
    pro = {r.meter: r.unit_price_usd for r in PLANS["pro"].metered_rates}
    assert pro == {
        "tokens_in": Decimal("0.000001"),
        "tokens_out": Decimal("0.000002"),
        "storage_mb": Decimal("0.10"),
        "egress_mb": Decimal("0.05"),
    }
    enterprise = {r.meter: r.unit_price_usd for r in PLANS["enterprise"].metered_rates}
    assert enterprise == {
        "tokens_in": Decimal("0.0000005"),
        "tokens_out": Decimal("0.000001"),
        "storage_mb": Decimal("0.05"),
        "egress_mb": Decimal("0.02"),
    }
    assert PLANS["free"].metered_rates == ()


def test_limits_are_the_specifications() -> None:
    limits = {
        name: (p.limits.max_requests_per_month, p.limits.max_tokens_per_month) for name, p in PLANS.items()
    }
    assert limits == {"free": (1000, 100000), "pro": (50000, 2000000), "enterprise": (-1, -1)}
    assert [PLANS[n].limits.max_storage_gb for n in ("free", "pro", "enterprise")] == [1, 10, 100]


def test_downgrade_violations_name_each_limit() -> None:
    found = limit_violations(PLANS["free"], users=5, projects=3, storage_mb=Decimal("1025"))
    assert [v.as_detail() for v in found] == [
        {"limit": "max_users", "allowed": 3, "current": "5"},
        {"limit": "max_storage_gb", "allowed": 1, "current": "1.0009765625"},
    ]
    assert limit_violations(PLANS["enterprise"], users=10_000, projects=10_000, storage_mb=Decimal(0)) == []
    assert limit_violations(PLANS["free"], users=3, projects=3, storage_mb=Decimal(1024)) == []
