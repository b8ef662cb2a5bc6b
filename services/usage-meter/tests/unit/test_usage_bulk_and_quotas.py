"""Pure rules: per-event validation of bulk ingestion, deterministic event ids, quota states and the
quota evaluator's transitions (in-memory views and recorder)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from usage_meter.application.bulk import event_id_for, ingest_bulk
from usage_meter.application.jobs import QuotaEvaluator
from usage_meter.domain.model import AcceptanceRules, quota_state, storage_limit_mb

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
RULES = AcceptanceRules(late_arrival_window=timedelta(hours=48), future_tolerance=timedelta(minutes=5))


class Captured:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []

    async def publish_all(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        self.messages.extend(messages)


async def test_each_event_is_judged_on_its_own_and_only_accepted_ones_are_produced() -> None:
    sink = Captured()
    items: list[Any] = [
        {"event_id": "a", "meter": "tokens_in", "quantity": "10"},
        {"event_id": "b", "meter": "bogus", "quantity": "1"},
        {"event_id": "c", "meter": "requests", "quantity": "-1"},
        {
            "event_id": "d",
            "meter": "requests",
            "quantity": "1",
            "timestamp": (NOW + timedelta(minutes=6)).isoformat(),
        },
        {
            "event_id": "e",
            "meter": "requests",
            "quantity": "1",
            "timestamp": (NOW - timedelta(hours=49)).isoformat(),
        },
        {"event_id": "f", "tenant_id": "other", "meter": "requests", "quantity": "1"},
        {"event_id": "g", "meter": "requests"},
        "not an object",
        {"event_id": "a", "meter": "tokens_in", "quantity": "10"},
        {"meter": "storage_mb", "quantity": "-3"},
    ]
    results = await ingest_bulk(
        items, tenant_id="acme", principal="usr_1", rules=RULES, publisher=sink, now=NOW
    )
    assert [(r.status, r.reason) for r in results] == [
        ("accepted", None),
        ("rejected", "unknown_meter"),
        ("rejected", "negative_quantity"),
        ("rejected", "timestamp_in_future"),
        ("rejected", "timestamp_too_old"),
        ("rejected", "tenant_mismatch"),
        ("rejected", "invalid_event"),
        ("rejected", "invalid_event"),
        ("accepted", None),
        ("accepted", None),
    ]
    assert len(sink.messages) == 2  # "a" twice in one request is produced once
    key, value = sink.messages[0]
    envelope = json.loads(value)
    assert key == b"acme" and envelope["event_id"] == str(event_id_for("acme", "a"))
    assert envelope["payload"]["user_id"] == "usr_1" and envelope["payload"]["quantity"] == "10"
    assert envelope["event_type"] == "usage.UsageRecorded" and envelope["tenant_id"] == "acme"


def test_client_ids_map_to_stable_per_tenant_event_ids() -> None:
    assert event_id_for("acme", "x") == event_id_for("acme", "x")
    assert event_id_for("acme", "x") != event_id_for("globex", "x")


@pytest.mark.parametrize(
    ("used", "limit", "state"),
    [("0", 10, "ok"), ("7.99", 10, "ok"), ("8", 10, "warning"), ("10", 10, "exceeded"), ("1e9", -1, "ok")],
)
def test_quota_state_thresholds(used: str, limit: int, state: str) -> None:
    assert quota_state(Decimal(used), limit) == state


def test_storage_limit_in_mb() -> None:
    assert storage_limit_mb(1) == 1024 and storage_limit_mb(0.5) == 512 and storage_limit_mb(-1) == -1


class Views:
    def __init__(self) -> None:
        self.month: dict[str, Decimal] = {}
        self.storage = Decimal(0)
        self.states: dict[str, dict[str, Any]] = {}
        self.lims: dict[str, Any] | None = {
            "max_requests_per_month": 10,
            "max_tokens_per_month": -1,
            "max_storage_gb": 1,
        }

    async def limits(self, tenant_id: str) -> dict[str, Any] | None:
        return self.lims

    async def aggregates(self, tenant_id: str, kind: str, first: str, last: str) -> list[dict[str, Any]]:
        return [{"meter": m, "quantity": str(q)} for m, q in self.month.items()]

    async def total(self, tenant_id: str, meter: str) -> Decimal:
        return self.storage

    async def quota_states(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        return dict(self.states)

    async def save_quota_state(self, tenant_id: str, quota: str, state: dict[str, Any]) -> None:
        self.states[quota] = state

    async def stale_quota_tenants(self, month: str) -> list[str]:
        return []


class Recorder:
    def __init__(self) -> None:
        self.streams: dict[str, list[BaseModel]] = {}

    async def record_once(
        self, stream_id: str, expected_version: int, tenant_id: str, event: BaseModel
    ) -> bool:
        stream = self.streams.setdefault(stream_id, [])
        if len(stream) != expected_version:
            return False
        stream.append(event)
        return True

    async def last_event(self, stream_id: str) -> tuple[int, dict[str, Any] | None]:
        stream = self.streams.get(stream_id, [])
        return len(stream), stream[-1].model_dump(mode="json") if stream else None


async def test_quota_evaluator_publishes_each_change_once_and_falls_back_in_a_new_month() -> None:
    views, recorder = Views(), Recorder()
    clock = {"now": NOW}
    evaluator = QuotaEvaluator(views, recorder, clock=lambda: clock["now"])
    assert await evaluator.evaluate("acme") == []
    views.month["requests"] = Decimal(8)
    (warning,) = await evaluator.evaluate("acme")
    assert (warning.quota, warning.state, warning.previous_state, warning.threshold_pct) == (
        "requests",
        "warning",
        "ok",
        80,
    )
    assert warning.resets_at == datetime(2026, 12, 1, tzinfo=UTC) and warning.sequence == 1
    assert await evaluator.evaluate("acme") == []  # no change, no event
    views.month["requests"] = Decimal(10)
    views.storage = Decimal(900)
    changes = {(e.quota, e.state, e.sequence) for e in await evaluator.evaluate("acme")}
    assert changes == {("requests", "exceeded", 2), ("storage", "warning", 1)}
    clock["now"] = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC)
    views.month = {}
    (reset,) = await evaluator.evaluate("acme")
    assert (reset.state, reset.previous_state, reset.period, reset.threshold_pct) == (
        "ok",
        "exceeded",
        "2026-12",
        0,
    )


async def test_quota_evaluator_adopts_a_stream_moved_by_another_process() -> None:
    views, recorder = Views(), Recorder()
    evaluator = QuotaEvaluator(views, recorder, clock=lambda: NOW)
    views.month["requests"] = Decimal(10)
    other = QuotaEvaluator(Views(), recorder, clock=lambda: NOW)
    other._views.month["requests"] = Decimal(10)  # noqa: SLF001 - the other process's view
    await other.evaluate("acme")
    assert await evaluator.evaluate("acme") == []  # conflict: adopts sequence 1 instead of publishing
    assert views.states["requests"]["sequence"] == 1 and views.states["requests"]["state"] == "exceeded"
