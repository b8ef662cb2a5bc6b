"""The consumer's counters as ingest-stats shows them: lag percentiles over every event since the last
reset, read from a constant-memory histogram (within 1 %), or left out."""

from __future__ import annotations

import random

import pytest

from usage_meter.adapters.kafka_usage import IngestStats, LagHistogram, RecentLag

pytestmark = pytest.mark.unit


def test_lag_percentiles_are_over_the_events_and_can_be_left_out() -> None:
    stats = IngestStats(applied=100, duplicates=3, partitions=[0, 2])
    for ms in range(100, 0, -1):  # 100 ... 1, unsorted
        stats.lags.add(float(ms))
    full = stats.snapshot()
    assert full["lag_ms"]["n"] == 100 and full["lag_ms"]["max"] == 100.0
    assert full["lag_ms"]["p50"] == pytest.approx(51.0, rel=0.01) and full["lag_ms"]["p50"] >= 51.0
    assert full["lag_ms"]["p99"] == 100.0  # never above the largest lag seen
    light = stats.snapshot(lag=False)
    assert light["lag_ms"] is None
    assert {k: v for k, v in light.items() if k != "lag_ms"} == {
        k: v for k, v in full.items() if k != "lag_ms"
    }
    assert light["applied"] == 100 and light["duplicates"] == 3 and light["partitions"] == [0, 2]


def test_the_histogram_reads_quantiles_within_one_percent_of_the_exact_ones() -> None:
    rng = random.Random(7)
    lags = [rng.lognormvariate(5, 1.5) for _ in range(20_000)] + [0.2, -3.0]  # and some under 1 ms
    histogram = LagHistogram()
    for i in range(0, len(lags), 2):  # events of one record share a lag: added as a count
        histogram.add(lags[i])
        histogram.add(lags[i + 1], 1)
    exact = sorted(lags)
    for q in (0.0, 0.5, 0.9, 0.99, 0.999, 1.0):
        want = exact[min(len(exact) - 1, int(q * len(exact)))]
        got = histogram.quantile(q)
        assert got is not None
        if want > 1.0:
            assert want <= got <= want * 1.01, (q, want, got)
        else:  # the first bucket holds everything up to 1 ms
            assert got <= 1.0, (q, want, got)
    assert histogram.n == len(lags) and histogram.max == max(lags)
    many = LagHistogram()
    many.add(250.0, events=1000)  # a whole record at once
    assert (many.n, many.quantile(0.5), many.quantile(0.99)) == (1000, 250.0, 250.0)
    many.clear()
    assert (many.n, many.quantile(0.5), many.max) == (0, None, None)


def test_the_recent_lag_forgets_what_is_older_than_two_windows() -> None:
    """/metrics exports the lag of the last one to two minutes, so an incident shows while it lasts
    and leaves once it is over; ingest-stats keeps everything since its last reset."""
    now = [0.0]
    stats = IngestStats(recent_lags=RecentLag(window_s=60, clock=lambda: now[0]))
    stats.add_lag(5000.0, 100)  # an incident at t = 0
    now[0] = 30
    stats.add_lag(10.0, 100)
    assert stats.recent_lags.histogram().quantile(0.99) == 5000.0  # still within the window
    now[0] = 70  # one window later: the incident is in the previous one, still read
    stats.add_lag(10.0, 100)
    recent = stats.recent_lags.histogram()
    assert recent.n == 300 and recent.quantile(0.99) == 5000.0
    now[0] = 140  # two windows later: only what came since
    stats.add_lag(12.0, 100)
    recent = stats.recent_lags.histogram()
    assert recent.n == 200 and recent.max == 12.0
    assert recent.quantile(0.99) == pytest.approx(12.0, rel=0.01)
    now[0] = 400  # nothing for a long time: nothing recent
    assert stats.recent_lags.histogram().n == 0
    assert stats.lags.n == 400 and stats.lags.max == 5000.0  # ingest-stats: all since its reset
