"""The versioned price table (`prices.json` beside this module) and per-tenant overrides.

Model names resolve to a price entry in this order:
1. exact key (case-insensitive);
2. the longest key that is a prefix of the name and ends where the name has a separator
   (`-`, `:`, `@`, `.`, `_`, `/`): `gpt-4o-2024-08-06` -> `gpt-4o`, `gpt-4o-mini-2024-07-18` ->
   `gpt-4o-mini` (longer wins), while `gpt-4o` never falls to `gpt-4` (no separator after `gpt-4`);
   a dated snapshot priced differently gets its own key (`gpt-4o-2024-05-13`);
3. for Bedrock, first drop an inference-profile ARN prefix and a cross-region prefix
   (`us.`, `eu.`, `apac.`, `global.` ...): `us.anthropic.claude-3-5-haiku-20241022-v1:0` ->
   `anthropic.claude-3-5-haiku`;
4. the provider's `*` entry, if any (the `local` provider: every model at 0);
otherwise the model is unknown (the estimate says so; it never prices it at $0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

PRICE_FIELDS = ("input", "output", "cached_input", "cache_write", "reasoning")
_SEPARATORS = frozenset("-:@._/")
_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|us-gov|global|jp|au|ca)\.(?=[a-z0-9-]+\.)")


def _price(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{where}: price must be a number, got {value!r}")
    try:
        price = Decimal(str(value))  # str() keeps 0.1 as 0.1 if a float slipped in
    except InvalidOperation:
        raise ValueError(f"{where}: price {value!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise ValueError(f"{where}: price must be finite and >= 0, got {value!r}")
    return price


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. Unset `cached_input`/`cache_write` cost as input, unset `reasoning`
    as output."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None

    @property
    def cached_input_rate(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_rate(self) -> Decimal:
        return self.input if self.cache_write is None else self.cache_write

    @property
    def reasoning_rate(self) -> Decimal:
        return self.output if self.reasoning is None else self.reasoning

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str, base: ModelPrice | None = None) -> ModelPrice:
        unknown = set(data) - set(PRICE_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown price fields {sorted(unknown)} (known: {list(PRICE_FIELDS)})")
        values: dict[str, Decimal | None] = {}
        for name in PRICE_FIELDS:
            if name in data:
                values[name] = _price(data[name], f"{where}.{name}")
            elif base is not None:
                values[name] = getattr(base, name)
        if values.get("input") is None or values.get("output") is None:
            raise ValueError(f"{where}: a new price entry needs input and output")
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PriceMatch:
    key: str
    price: ModelPrice


@dataclass(frozen=True)
class PriceTable:
    version: str
    effective_date: date
    prices: Mapping[str, Mapping[str, ModelPrice]] = field(default_factory=dict)
    currency: str = "USD"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTable:
        providers: dict[str, dict[str, ModelPrice]] = {}
        for provider, models in (data.get("providers") or {}).items():
            providers[provider] = {
                model.lower(): ModelPrice.parse(entry, f"{provider}/{model}")
                for model, entry in models.items()
            }
        return cls(
            version=str(data["version"]),
            effective_date=date.fromisoformat(str(data["effective_date"])),
            prices=providers,
            currency=str(data.get("currency", "USD")),
        )

    def lookup(self, provider: str, model: str) -> PriceMatch | None:
        """The price entry of `provider`/`model` (see the module docstring for the rules)."""
        models = self.prices.get(provider)
        if not models:
            return None
        name = model.strip().lower()
        candidates = [name]
        if name.startswith("arn:"):
            name = name.rsplit("/", 1)[-1]
            candidates.append(name)
        stripped = _REGION_PREFIX.sub("", name)
        if stripped != name:
            candidates.append(stripped)
        for candidate in candidates:
            if candidate in models:
                return PriceMatch(candidate, models[candidate])
            best: str | None = None
            for key in models:
                if (
                    key != "*"
                    and len(key) < len(candidate)
                    and candidate.startswith(key)
                    and candidate[len(key)] in _SEPARATORS
                    and (best is None or len(key) > len(best))
                ):
                    best = key
            if best is not None:
                return PriceMatch(best, models[best])
        if "*" in models:
            return PriceMatch("*", models["*"])
        return None

    def with_overrides(
        self, overrides: Mapping[str, Mapping[str, Mapping[str, Any]]], *, label: str
    ) -> PriceTable:
        """A copy with a tenant's negotiated prices: `{provider: {model: {field: price}}}`. Fields
        left out keep the base entry's value; a model not in the table needs input and output. The
        result's version is `"<base version>+<label>"`, so estimates say which prices they used."""
        if not overrides:
            return self
        merged = {provider: dict(models) for provider, models in self.prices.items()}
        for provider, models in overrides.items():
            target = merged.setdefault(provider, {})
            for model, entry in models.items():
                key = model.lower()
                target[key] = ModelPrice.parse(entry, f"override {provider}/{model}", base=target.get(key))
        return PriceTable(
            version=f"{self.version}+{label}",
            effective_date=self.effective_date,
            prices=merged,
            currency=self.currency,
        )


def load_price_table(path: str | Path | None = None) -> PriceTable:
    """The table in `path`, or the packaged `prices.json`."""
    if path is None:
        text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return PriceTable.from_dict(json.loads(text))


@lru_cache(maxsize=1)
def default_price_table() -> PriceTable:
    return load_price_table()


def price_table_for(
    overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    *,
    label: str = "tenant",
    base: PriceTable | None = None,
) -> PriceTable:
    """The table a tenant is priced with: the default (or `base`) plus its overrides."""
    table = base or default_price_table()
    return table.with_overrides(overrides, label=label) if overrides else table
