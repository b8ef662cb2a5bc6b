"""Summary statistics of an experiment run: rates, means, latency and Decimal cost percentiles."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ailab_contracts.events.runs import EvaluatorScore, ExperimentExampleScored, RunError
from run_executor.experiments.summary import percentile, summarize, usd

pytestmark = pytest.mark.unit


def result(
    index: int,
    passes: dict[str, tuple[float, bool]] | None = None,
    *,
    latency: float | None = None,
    cost: str | None = None,
    error: bool = False,
) -> ExperimentExampleScored:
    return ExperimentExampleScored(
        experiment_id="exp_1",
        run_number=1,
        example_index=index,
        scores=[]
        if error
        else [EvaluatorScore(evaluator=n, score=s, passed=p) for n, (s, p) in (passes or {}).items()],
        latency_ms=latency,
        cost_usd=cost,
        error=RunError(code="provider_timeout", message="slow") if error else None,
    )


def test_percentile_linear_interpolation_floats() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.95) == pytest.approx(95.05)
    assert percentile(values, 0.99) == pytest.approx(99.01)
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 1) == 3.0  # unsorted input, top rank


def test_percentile_of_decimals_is_exact() -> None:
    costs = [Decimal("0.0001") * i for i in range(1, 101)]
    p50 = percentile(costs, Decimal("0.5"))
    p95 = percentile(costs, Decimal("0.95"))
    assert isinstance(p50, Decimal) and p50 == Decimal("0.00505")
    assert p95 == Decimal("0.009505")
    assert percentile([Decimal("0.1"), Decimal("0.2")], Decimal("0.5")) == Decimal("0.15")


def test_usd_strings_are_fixed_point_rounded_to_1e_10() -> None:
    assert usd(Decimal("0.00042")) == "0.00042"
    assert usd(Decimal("100")) == "100"
    assert usd(Decimal("1E-12")) == "0"
    assert usd(Decimal("0.00000000005")) == "0.0000000001"  # half-up
    assert usd(Decimal("-1")) == "0"
    assert usd(None) is None


def test_summary_rates_means_latency_and_cost() -> None:
    results = [
        result(0, {"exact": (1.0, True), "judge": (0.9, True)}, latency=100, cost="0.001"),
        result(1, {"exact": (0.0, False), "judge": (0.8, True)}, latency=200, cost="0.002"),
        result(2, {"exact": (1.0, True), "judge": (0.4, False)}, latency=300, cost="0.003"),
        result(3, error=True, latency=400, cost="0.0005"),
        result(4, error=True),  # never started: no latency, no cost
        result(1, {"exact": (1.0, True), "judge": (1.0, True)}, latency=1, cost="9"),  # repeat: ignored
    ]
    summary = summarize(results, ["exact", "judge", "unused"], examples_total=6)
    assert (summary.examples_total, summary.examples_scored, summary.examples_failed) == (6, 3, 2)
    assert summary.pass_rate == pytest.approx(1 / 3)  # only example 0 passed everything
    assert summary.mean_score == pytest.approx((1.0 + 0.9 + 0.0 + 0.8 + 1.0 + 0.4) / 6)
    by_name = {e.evaluator: e for e in summary.evaluators}
    assert [e.evaluator for e in summary.evaluators] == ["exact", "judge", "unused"]
    assert by_name["exact"].pass_rate == pytest.approx(2 / 3)
    assert by_name["judge"].mean_score == pytest.approx(0.7)
    assert by_name["unused"].pass_rate is None and by_name["unused"].mean_score is None
    assert summary.latency_p50_ms == 250.0  # failed example 3 took time too
    assert summary.latency_p95_ms == pytest.approx(385.0)
    assert summary.latency_p99_ms == pytest.approx(397.0)
    assert summary.cost_total_usd == "0.0065"
    assert summary.cost_p50_usd == "0.0015"
    assert summary.cost_p95_usd == "0.00285"


def test_summary_of_nothing() -> None:
    summary = summarize([], ["exact"], examples_total=0)
    assert (summary.examples_scored, summary.examples_failed, summary.pass_rate, summary.mean_score) == (
        0,
        0,
        None,
        None,
    )
    assert summary.latency_p50_ms is None and summary.cost_total_usd is None and summary.cost_p95_usd is None
