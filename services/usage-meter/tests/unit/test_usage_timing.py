"""The acceptance window's per-event check: the same answers whatever time zone a timestamp comes in
(the check keeps the bounds in the last timestamp's tzinfo to compare fast)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import AwareDatetime, TypeAdapter

from usage_meter.domain.model import AcceptanceRules

pytestmark = pytest.mark.unit

RECEIVED = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # the night Europe/Berlin moves its clocks
RULES = AcceptanceRules(late_arrival_window=timedelta(hours=48), future_tolerance=timedelta(minutes=5))
PARSE = TypeAdapter(AwareDatetime).validate_python


def expected(ts: datetime) -> str | None:
    if ts > RECEIVED + timedelta(minutes=5):
        return "timestamp_in_future"
    if ts < RECEIVED - timedelta(hours=48):
        return "timestamp_too_old"
    return None


def test_every_time_zone_and_edge_gives_the_plain_comparison_s_answer() -> None:
    bounds = RULES.bounds(RECEIVED)
    berlin, plus2 = ZoneInfo("Europe/Berlin"), timezone(timedelta(hours=2))
    edges = [timedelta(minutes=5), timedelta(minutes=5, microseconds=1), -timedelta(hours=48)]
    edges += [-timedelta(hours=48, microseconds=1), timedelta(0), -timedelta(hours=30), timedelta(hours=1)]
    for offset in edges:
        instant = RECEIVED + offset
        # Mixed on purpose: each change of tzinfo re-expresses the bounds.
        for ts in (
            instant,
            PARSE(instant.isoformat()),  # pydantic's shared UTC tzinfo
            PARSE(instant.astimezone(plus2).isoformat()),
            instant.astimezone(plus2),
            instant.astimezone(berlin),  # a zone with daylight saving time: compared as Python does
            PARSE(instant.isoformat()),
        ):
            assert bounds.problem(ts) == expected(ts) == RULES.timing_problem(ts, RECEIVED), (offset, ts)
