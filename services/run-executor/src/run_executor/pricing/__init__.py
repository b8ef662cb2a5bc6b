"""Token prices (a versioned table with per-tenant overrides) and cost estimates in `Decimal`."""

from .estimate import QUANTUM, CostEstimate, estimate_cost
from .table import ModelPrice, PriceMatch, PriceTable, default_price_table, load_price_table, price_table_for

__all__ = [
    "QUANTUM",
    "CostEstimate",
    "ModelPrice",
    "PriceMatch",
    "PriceTable",
    "default_price_table",
    "estimate_cost",
    "load_price_table",
    "price_table_for",
]
