"""The summary of an experiment run from its example results (pure).

- `examples_total`: the pinned file's rows; `examples_scored` / `examples_failed`: results without /
  with an error (a target failure). Rates and means are over scored examples and null when none.
- `pass_rate`: share of scored examples that passed every evaluator; `mean_score`: mean of every
  score of every scored example; per evaluator (in definition order): its pass rate and mean score.
- Latency percentiles over every result that has a latency (failed ones included: they took time);
  cost total and percentiles over every result with a known cost (failed ones included: they were
  paid for), in `Decimal`, as fixed-point strings rounded half-up to 1e-10 USD.
- Percentiles interpolate linearly between closest ranks (NumPy's default `linear` method): with
  sorted values v[0..n-1], p -> v[lo] + (v[hi] - v[lo]) * (r - lo) for r = p * (n - 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from ailab_contracts.events.runs import EvaluatorSummary, ExperimentExampleScored, ExperimentRunSummary

USD_QUANTUM = Decimal("1e-10")

N = TypeVar("N", float, Decimal)


def percentile(values: Sequence[N], p: float | Decimal) -> N | None:
    """The p-th quantile (0 <= p <= 1) of `values` by linear interpolation; None for no values.
    Decimal values stay Decimal (exact)."""
    if not values:
        return None
    ordered = sorted(values)
    if isinstance(ordered[0], Decimal):
        rank_d = Decimal(str(p)) * (len(ordered) - 1)
        lo = int(rank_d)
        hi = min(lo + 1, len(ordered) - 1)
        low_d, high_d = Decimal(ordered[lo]), Decimal(ordered[hi])
        return low_d + (high_d - low_d) * (rank_d - lo)  # type: ignore[return-value]
    rank = float(p) * (len(ordered) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(ordered) - 1)
    low, high = float(ordered[lo]), float(ordered[hi])
    return low + (high - low) * (rank - lo)  # type: ignore[return-value]


def usd(value: Decimal | None) -> str | None:
    """A non-negative amount as the contracts' fixed-point string (`format(Decimal, 'f')`)."""
    if value is None:
        return None
    rounded = max(value, Decimal(0)).quantize(USD_QUANTUM, rounding=ROUND_HALF_UP).normalize()
    return format(rounded, "f")


def _mean(values: Sequence[float]) -> float | None:
    return min(1.0, max(0.0, sum(values) / len(values))) if values else None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(
    results: Iterable[ExperimentExampleScored], evaluator_names: Sequence[str], examples_total: int
) -> ExperimentRunSummary:
    """The run's summary over `results` (one per example index; a repeated index counts once, the
    first one)."""
    by_index: dict[int, ExperimentExampleScored] = {}
    for result in results:
        by_index.setdefault(result.example_index, result)
    scored = [r for r in by_index.values() if r.error is None]
    failed = len(by_index) - len(scored)
    all_scores = [s.score for r in scored for s in r.scores]
    evaluators: list[EvaluatorSummary] = []
    for name in evaluator_names:
        mine = [s for r in scored for s in r.scores if s.evaluator == name]
        evaluators.append(
            EvaluatorSummary(
                evaluator=name,
                pass_rate=(sum(1 for s in mine if s.passed) / len(mine)) if mine else None,
                mean_score=_mean([s.score for s in mine]),
            )
        )
    latencies = [r.latency_ms for r in by_index.values() if r.latency_ms is not None]
    costs = [Decimal(r.cost_usd) for r in by_index.values() if r.cost_usd is not None]
    return ExperimentRunSummary(
        examples_total=examples_total,
        examples_scored=len(scored),
        examples_failed=failed,
        pass_rate=(sum(1 for r in scored if all(s.passed for s in r.scores)) / len(scored))
        if scored
        else None,
        mean_score=_mean(all_scores),
        evaluators=evaluators,
        latency_p50_ms=_ms(percentile(latencies, 0.5)),
        latency_p95_ms=_ms(percentile(latencies, 0.95)),
        latency_p99_ms=_ms(percentile(latencies, 0.99)),
        cost_total_usd=usd(sum(costs, Decimal(0))) if costs else None,
        cost_p50_usd=usd(percentile(costs, Decimal("0.5"))),
        cost_p95_usd=usd(percentile(costs, Decimal("0.95"))),
    )
