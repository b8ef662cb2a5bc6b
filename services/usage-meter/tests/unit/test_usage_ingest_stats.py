"""The consumer's counters as ingest-stats shows them: lag percentiles over the samples, or left out
(a poller that only watches the counters does not make the process sort 200,000 samples)."""

from __future__ import annotations

import pytest

from usage_meter.adapters.kafka_usage import IngestStats

pytestmark = pytest.mark.unit


def test_lag_percentiles_are_over_the_samples_and_can_be_left_out() -> None:
    stats = IngestStats(applied=100, duplicates=3, partitions=[0, 2])
    stats.lags_ms.extend(float(ms) for ms in range(100, 0, -1))  # 100 ... 1, unsorted
    full = stats.snapshot()
    assert full["lag_ms"] == {"p50": 51.0, "p99": 100.0, "max": 100.0, "n": 100}
    light = stats.snapshot(lag=False)
    assert light["lag_ms"] is None
    assert {k: v for k, v in light.items() if k != "lag_ms"} == {
        k: v for k, v in full.items() if k != "lag_ms"
    }
    assert light["applied"] == 100 and light["duplicates"] == 3 and light["partitions"] == [0, 2]
