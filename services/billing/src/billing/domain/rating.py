"""Rating: usage totals × plan rates, in exact `Decimal`, rounded once, at the end, to cents.

Every line keeps its exact (unrounded) amount so a finance team can redo the sum by hand; only the
invoice total is rounded (half up, to 0.01 USD), and the difference is shown as
`rounding_adjustment_usd`.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .plans import PlanConfig

CENT = Decimal("0.01")
_EXACT = decimal.Context(prec=80, rounding=ROUND_HALF_UP, traps=[decimal.Inexact, decimal.InvalidOperation])


def text(value: Decimal) -> str:
    """Fixed-point text without trailing zeros (`29`, `0.125`), never an exponent."""
    if value == value.to_integral_value():
        return format(value.quantize(Decimal(1)), "f")
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class InvoiceLine:
    kind: str  # base | metered
    description: str
    meter: str | None
    quantity: Decimal  # in the meter's unit (or 1 for the base price)
    billing_quantity: Decimal  # in the rate's unit
    unit: str
    unit_price_usd: Decimal
    amount_usd: Decimal  # exact, unrounded


@dataclass(frozen=True)
class RatedInvoice:
    plan: str
    plan_version: int
    period: str
    lines: tuple[InvoiceLine, ...]
    subtotal_usd: Decimal  # exact sum of the lines
    total_usd: Decimal  # subtotal rounded once to cents

    @property
    def rounding_adjustment_usd(self) -> Decimal:
        return self.total_usd - self.subtotal_usd


def rate_period(
    plan: PlanConfig, period: str, totals: dict[str, Decimal], storage_level_mb: Decimal
) -> RatedInvoice:
    """Rate one period: the plan's base price, then one line per metered rate of the plan.

    `totals` are the period's sums per meter (closed days); `storage_level_mb` is the storage held at
    the end of the period, the quantity of gauge meters.
    """
    lines: list[InvoiceLine] = [
        InvoiceLine(
            kind="base",
            description=f"{plan.name} plan, base price",
            meter=None,
            quantity=Decimal(1),
            billing_quantity=Decimal(1),
            unit="month",
            unit_price_usd=plan.base_price_usd,
            amount_usd=plan.base_price_usd,
        )
    ]
    for rate in plan.metered_rates:
        quantity = storage_level_mb if rate.gauge else totals.get(rate.meter, Decimal(0))
        quantity = max(quantity, Decimal(0))
        billing_quantity = _EXACT.divide(quantity, rate.meter_units_per_billing_unit)
        amount = _EXACT.multiply(billing_quantity, rate.unit_price_usd)
        lines.append(
            InvoiceLine(
                kind="metered",
                description=f"{rate.meter} per {rate.billing_unit}",
                meter=rate.meter,
                quantity=quantity,
                billing_quantity=billing_quantity,
                unit=rate.billing_unit,
                unit_price_usd=rate.unit_price_usd,
                amount_usd=amount,
            )
        )
    subtotal = Decimal(0)
    for line in lines:
        subtotal = _EXACT.add(subtotal, line.amount_usd)
    return RatedInvoice(
        plan=plan.name,
        plan_version=plan.version,
        period=period,
        lines=tuple(lines),
        subtotal_usd=subtotal,
        total_usd=subtotal.quantize(CENT, rounding=ROUND_HALF_UP),
    )


def month_of(day: str) -> str:
    return day[:7]
