"""Cost of one provider call from its reported usage, in `Decimal` (no float anywhere)."""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from run_executor.providers.base import TokenUsage

from .table import PriceTable, default_price_table

QUANTUM = Decimal("1e-10")  # USD; estimates are quantized once, at the end
_PER_TOKENS = Decimal(1_000_000)


@dataclass(frozen=True)
class CostEstimate:
    """`total` is None when the model has no price (see `warning`), never a silent $0. `breakdown`
    holds USD per component (input, cached_input, cache_write, output, reasoning)."""

    total: Decimal | None
    breakdown: Mapping[str, Decimal] = field(default_factory=dict)
    price_version: str = ""
    warning: str | None = None
    matched_model: str | None = None
    currency: str = "USD"

    @property
    def total_usd(self) -> str | None:
        """`total` as a fixed-point string (the `UsdAmount` form of the event contracts)."""
        return None if self.total is None else format(self.total.normalize(), "f")


def estimate_cost(
    provider: str, model: str, usage: TokenUsage, *, table: PriceTable | None = None
) -> CostEstimate:
    """Price `usage` with `table` (default: the packaged table). Cached prompt tokens are priced at
    the cache-read rate and taken out of the input count when the provider counts them in it
    (OpenAI); reasoning tokens likewise out of the output count. The total is rounded half-up to
    1e-10 USD after summing the exact components."""
    table = table or default_price_table()
    match = table.lookup(provider, model)
    if match is None:
        return CostEstimate(
            total=None,
            price_version=table.version,
            warning=f"no price for {provider}/{model} in price table {table.version}; cost unknown",
            currency=table.currency,
        )
    price = match.price
    warnings: list[str] = []
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        fresh_input = usage.input_tokens
        if usage.cached_included_in_input:
            fresh_input -= usage.cached_input_tokens + usage.cache_write_input_tokens
        output = usage.output_tokens
        if usage.reasoning_included_in_output:
            output -= usage.reasoning_tokens
        if fresh_input < 0 or output < 0:
            warnings.append("reported cached/reasoning tokens exceed their totals; priced the totals only")
            fresh_input, output = max(fresh_input, 0), max(output, 0)
        parts = {
            "input": Decimal(fresh_input) * price.input,
            "cached_input": Decimal(usage.cached_input_tokens) * price.cached_input_rate,
            "cache_write": Decimal(usage.cache_write_input_tokens) * price.cache_write_rate,
            "output": Decimal(output) * price.output,
            "reasoning": Decimal(usage.reasoning_tokens) * price.reasoning_rate,
        }
        exact = {name: value / _PER_TOKENS for name, value in parts.items()}
        total = sum(exact.values(), Decimal(0)).quantize(QUANTUM, rounding=ROUND_HALF_UP)
        breakdown = {name: value.quantize(QUANTUM, rounding=ROUND_HALF_UP) for name, value in exact.items()}
    return CostEstimate(
        total=total,
        breakdown=breakdown,
        price_version=table.version,
        warning="; ".join(warnings) or None,
        matched_model=match.key,
        currency=table.currency,
    )
