"""Pure rules: per-event validation of bulk ingestion, the `usage.UsageBatchRecorded` records it
produces, deterministic event ids, quota states and the quota evaluator's transitions (in-memory views
and recorder)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ailab_contracts import REGISTRY
from ailab_contracts.events.usage import QuotaStateChanged, UsageBatchEvent, UsageBatchRecorded
from usage_meter.application.bulk import (
    CLIENT_ID_NAMESPACE,
    ItemResult,
    _judge_canonical,
    _prepare,
    _validate_canonical,
    batch_record_values,
    event_id_for,
    event_id_text,
    ingest_bulk,
    parse_request,
    random_event_id,
)
from usage_meter.application.jobs import QuotaEvaluator
from usage_meter.domain.model import (
    AcceptanceRules,
    QuotaUsage,
    quota_sheet_ids,
    quota_state,
    storage_limit_mb,
)

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
    assert [r.event_id for r in results if r.status == "rejected"] == [None] * 7
    assert results[8].event_id == results[0].event_id == str(event_id_for("acme", "a"))
    assert len(sink.messages) == 1  # one record for the request
    key, value = sink.messages[0]
    envelope = json.loads(value)
    assert key == b"acme"
    assert envelope["event_type"] == "usage.UsageBatchRecorded" and envelope["schema_version"] == 1
    assert envelope["tenant_id"] == "acme" and envelope["producer"] == "usage-meter"
    assert envelope["occurred_at"] == NOW.isoformat() and envelope["stream_version"] == 1
    assert envelope["stream_id"] == f"usage-bulk:acme:{envelope['event_id']}"  # no request id here
    assert uuid.UUID(envelope["event_id"]).version == 4
    assert envelope["event_id"] not in {r.event_id for r in results}  # the record's own id
    payload = envelope["payload"]
    assert payload["tenant_id"] == "acme"
    # "a" twice in one request is produced once; the rejected ones not at all
    assert [e["event_id"] for e in payload["events"]] == [results[0].event_id, results[9].event_id]
    first, storage = payload["events"]
    # Each item is produced as sent, with the fields the API fills in (tenant, ids, defaults).
    assert first == {
        "event_id": str(event_id_for("acme", "a")),
        "tenant_id": "acme",
        "user_id": "usr_1",
        "meter": "tokens_in",
        "quantity": "10",
        "provider": "internal",
        "request_id": "a",
        "timestamp": NOW.isoformat(),
    }
    assert storage["quantity"] == "-3" and storage["request_id"] == "bulk-9"
    assert uuid.UUID(storage["event_id"]).version == 4  # no client id: a random id


async def test_the_record_is_a_valid_usage_batch_recorded_envelope() -> None:
    sink = Captured()
    items = [
        {
            "event_id": f"req_{i}",
            "meter": "tokens_out",
            "quantity": "1.50",
            "cost_usd_estimate": "0.000125",
            "provider": "openai",
            "model": "gpt-4o",
            "user_id": "usr_8f2c",
            "project_id": "prj_01",
            "timestamp": "2026-11-27T11:59:00+00:00",
            "dimensions": {"endpoint": "chat", "latency_ms": 12, "cached": False},
        }
        for i in range(3)
    ]
    results = await ingest_bulk(
        items, tenant_id="acme", principal="usr_1", rules=RULES, publisher=sink, request_id="req-7", now=NOW
    )
    ((_, value),) = sink.messages
    envelope, batch = REGISTRY.parse(json.loads(value))
    assert isinstance(batch, UsageBatchRecorded)
    assert envelope.event_type == "usage.UsageBatchRecorded" and envelope.schema_version == 1
    assert envelope.stream_id == "usage-bulk:acme:req-7" and envelope.stream_version == 1
    assert envelope.correlation_id == envelope.causation_id == "req-7"
    assert batch.tenant_id == "acme"
    assert [str(e.event_id) for e in batch.events] == [r.event_id for r in results]
    assert [e.request_id for e in batch.events] == ["req_0", "req_1", "req_2"]
    assert batch.events[0].quantity == Decimal("1.5") and batch.events[0].user_id == "usr_8f2c"
    assert batch.events[0].dimensions == {"endpoint": "chat", "latency_ms": 12, "cached": False}


async def test_loosely_written_timestamps_and_amounts_go_out_in_the_schema_s_form() -> None:
    """The model accepts more than the JSON Schema it publishes (unix seconds, numbers, exponents,
    spaces, other scripts' digits); what goes on the topic, and later out of export, is in the
    schema's form. Values already in it go out as sent."""
    sink = Captured()
    unix = int(NOW.timestamp())
    loose: list[dict[str, Any]] = [
        {"quantity": 7, "timestamp": unix},
        {"quantity": "1e3", "cost_usd_estimate": "2E-3", "timestamp": str(unix)},
        {"quantity": " 5", "cost_usd_estimate": 1, "timestamp": "2026-11-27 12:00:00Z"},
        {"quantity": "\u0665", "timestamp": "2026-11-27T12:00Z"},  # Arabic-Indic five
    ]
    canonical = {"quantity": "0.250", "cost_usd_estimate": "0.0010", "timestamp": "2026-11-27T11:00:00Z"}
    items = [{"meter": "tokens_in", **fields} for fields in [*loose, canonical]]
    results = await ingest_bulk(items, tenant_id="acme", principal="u", rules=RULES, publisher=sink, now=NOW)
    assert {r.status for r in results} == {"accepted"}
    events = json.loads(sink.messages[0][1])["payload"]["events"]
    schema = UsageBatchEvent.model_json_schema()["properties"]
    decimal_pattern = schema["quantity"]["pattern"]
    for event in events:
        assert re.fullmatch(decimal_pattern, event["quantity"]), event
        assert event.get("cost_usd_estimate") is None or re.fullmatch(
            decimal_pattern, event["cost_usd_estimate"]
        )
        assert datetime.fromisoformat(event["timestamp"]).tzinfo is not None, event
        assert event["timestamp"][10] == "T", event
    assert [(e["quantity"], e.get("cost_usd_estimate")) for e in events] == [
        ("7", None),
        ("1000", "0.002"),
        ("5", "1"),
        ("5", None),
        ("0.250", "0.0010"),
    ]
    assert [datetime.fromisoformat(e["timestamp"]) for e in events[:3]] == [NOW] * 3
    assert events[4]["timestamp"] == "2026-11-27T11:00:00Z"  # as sent


async def test_canonical_amounts_with_a_loose_timestamp_take_the_fast_path_and_go_out_in_form() -> None:
    """Decimals in their canonical form let the whole request be validated in one pass without models
    (`_validate_canonical`); a timestamp that pass accepts in another form still goes out in the
    schema's (RFC 3339, `T`)."""
    items: list[dict[str, Any]] = [
        {"meter": "tokens_in", "quantity": "2", "timestamp": "2026-11-27 12:00:00Z"},
        {"meter": "storage_mb", "quantity": "-1.5", "cost_usd_estimate": "0.01"},
    ]
    now_text = NOW.isoformat()
    prepared = [
        _prepare(i, it, tenant_id="acme", principal="u", now_text=now_text) for i, it in enumerate(items)
    ]
    assert _validate_canonical([p for p in prepared if not isinstance(p, ItemResult)]) is not None
    sink = Captured()
    results = await ingest_bulk(items, tenant_id="acme", principal="u", rules=RULES, publisher=sink, now=NOW)
    assert {r.status for r in results} == {"accepted"}
    events = json.loads(sink.messages[0][1])["payload"]["events"]
    assert [datetime.fromisoformat(e["timestamp"]) for e in events] == [NOW, NOW]
    assert events[0]["timestamp"][10] == "T" and events[1]["quantity"] == "-1.5"


def _batch_event(i: int, pad: int = 0) -> UsageBatchEvent:
    return UsageBatchEvent(
        event_id=str(event_id_for("acme", str(i))),
        tenant_id="acme",
        user_id="usr_1",
        meter="requests",
        quantity=Decimal(i),
        provider="internal",
        request_id=f"r{i}",
        timestamp=NOW,
        dimensions={"pad": "x" * pad},
    )


def test_a_request_too_large_for_one_record_is_split_in_order_within_the_limit() -> None:
    events = [_batch_event(i, pad=i * 10) for i in range(50)]
    (single,) = batch_record_values(events, tenant_id="acme", now=NOW, request_id="req-9")
    limit = len(single) // 4
    values = batch_record_values(events, tenant_id="acme", now=NOW, request_id="req-9", max_bytes=limit)
    assert len(values) > 4 and all(len(v) <= limit for v in values)
    parsed = [REGISTRY.parse(json.loads(v)) for v in values]
    assert [e.event_id for _, batch in parsed for e in batch.events] == [e.event_id for e in events]
    assert all(isinstance(batch, UsageBatchRecorded) for _, batch in parsed)
    assert [env.stream_version for env, _ in parsed] == list(range(1, len(values) + 1))
    assert {env.stream_id for env, _ in parsed} == {"usage-bulk:acme:req-9"}
    assert len({env.event_id for env, _ in parsed}) == len(values)
    # a hundred records and more: the longer stream positions still fit, even when events fill them
    same = [_batch_event(7).model_copy(update={"event_id": str(uuid.uuid4())}) for _ in range(300)]
    (one,) = batch_record_values(same[:1], tenant_id="acme", now=NOW, request_id=None)
    limit = len(one) + len(same[0].model_dump_json()) + 2  # two events exactly, with a one-digit position
    values = batch_record_values(same, tenant_id="acme", now=NOW, request_id=None, max_bytes=limit)
    assert len(values) >= 100 and max(len(v) for v in values) <= limit
    assert [e["event_id"] for v in values for e in json.loads(v)["payload"]["events"]] == [
        str(e.event_id) for e in same
    ]
    # an event larger than the limit on its own still travels, alone
    assert (
        len(batch_record_values(events[-2:], tenant_id="acme", now=NOW, request_id=None, max_bytes=10)) == 2
    )


def test_no_more_than_a_batch_worth_of_events_in_one_record() -> None:
    events = [_batch_event(i) for i in range(1001)]
    values = batch_record_values(events, tenant_id="acme", now=NOW, request_id=None)
    assert [len(json.loads(v)["payload"]["events"]) for v in values] == [1000, 1]


async def test_nothing_accepted_produces_nothing() -> None:
    sink = Captured()
    await ingest_bulk(
        [{"meter": "bogus"}], tenant_id="acme", principal="usr_1", rules=RULES, publisher=sink, now=NOW
    )
    assert sink.messages == []


def test_event_id_texts_are_the_uuid_module_s() -> None:
    for client_id in ["a", "req_5b1e9a-in", "é\u00ff", "x" * 200]:
        expected = uuid.uuid5(CLIENT_ID_NAMESPACE, f"acme\x1f{client_id}")
        assert event_id_text("acme", client_id) == str(expected) == str(event_id_for("acme", client_id))
    for _ in range(200):
        text = random_event_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


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
    """In memory, one tenant: its month's quantities per meter, its storage total, limits, states."""

    def __init__(self) -> None:
        self.month: dict[str, Decimal] = {}  # quantities per meter of the month `period`
        self.period = "2026-11"
        self.storage = Decimal(0)
        self.version = 1  # of both sheets: bump it with their contents
        self.states: dict[str, dict[str, Any]] = {}
        self.lims: dict[str, Any] | None = {
            "max_requests_per_month": 10,
            "max_tokens_per_month": -1,
            "max_storage_gb": 1,
        }
        self.reads = 0  # limits read: one per evaluation from the database

    async def limits(self, tenant_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.lims

    async def quota_usage(self, tenant_id: str, month: str) -> dict[str, QuotaUsage]:
        """As MongoUsageViews: the stored sheets among the two, read as `QuotaUsage.of_doc`."""
        month_sheet, totals_sheet = quota_sheet_ids(tenant_id, month)
        found = {}
        if self.month and month == self.period:
            found[month_sheet] = QuotaUsage.of_doc({"v": self.version, "meters": _parts(self.month)})
        if self.storage:
            found[totals_sheet] = QuotaUsage.of_doc(
                {"v": self.version, "meters": _parts({"storage_mb": self.storage})}
            )
        return found

    async def quota_states(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        return dict(self.states)

    async def save_quota_state(self, tenant_id: str, quota: str, state: dict[str, Any]) -> None:
        self.states[quota] = state

    async def stale_quota_tenants(self, month: str) -> list[str]:
        return []


def _parts(quantities: dict[str, Decimal]) -> dict[str, dict[str, str]]:
    return {meter: {"quantity": str(q)} for meter, q in quantities.items()}


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
    views.month["requests"], views.version = Decimal(8), 2
    (warning,) = await evaluator.evaluate("acme")
    assert (warning.quota, warning.state, warning.previous_state, warning.threshold_pct) == (
        "requests",
        "warning",
        "ok",
        80,
    )
    assert warning.resets_at == datetime(2026, 12, 1, tzinfo=UTC) and warning.sequence == 1
    assert await evaluator.evaluate("acme") == []  # no change, no event
    views.month["requests"], views.storage, views.version = Decimal(10), Decimal(900), 3
    changes = {(e.quota, e.state, e.sequence) for e in await evaluator.evaluate("acme")}
    assert changes == {("requests", "exceeded", 2), ("storage", "warning", 1)}
    clock["now"] = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC)  # December: no sheet yet
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


class Clocks:
    """The evaluator's wall clock (for the month) and monotonic clock (for the cache's age)."""

    def __init__(self) -> None:
        self.now = NOW
        self.mono = 1000.0


def _evaluator(views: Views, recorder: Recorder, clocks: Clocks, ttl_s: float = 30.0) -> QuotaEvaluator:
    return QuotaEvaluator(
        views, recorder, clock=lambda: clocks.now, cache_ttl_s=ttl_s, monotonic=lambda: clocks.mono
    )


def _applied(requests: int, version: int, storage: int | None = None) -> dict[str, QuotaUsage]:
    """The quota sheets of tenant acme as a batch of this process wrote them."""
    month_sheet, totals_sheet = quota_sheet_ids("acme", "2026-11")
    usage = {month_sheet: QuotaUsage(version, {"requests": Decimal(requests)})}
    if storage is not None:
        usage[totals_sheet] = QuotaUsage(version, {"storage": Decimal(storage)})
    return usage


async def test_usage_applied_here_is_checked_in_memory_until_a_state_would_change() -> None:
    views, recorder, clocks = Views(), Recorder(), Clocks()
    evaluator = _evaluator(views, recorder, clocks)
    await evaluator.mark({"acme"})
    await evaluator.drain()
    assert (views.reads, evaluator.evaluations, evaluator.checks) == (1, 1, 0)
    for version, requests in ((2, 3), (3, 5), (4, 7)):  # below 80 % of 10: nothing to read or publish
        await evaluator.note_applied(_applied(requests, version))
        await evaluator.drain()
    assert (views.reads, evaluator.checks, recorder.streams) == (1, 3, {})
    # Applied here and not yet read back (the database still shows version 4's 7 requests): the newer
    # version counts, and the state change is decided on a fresh read.
    views.month["requests"], views.version = Decimal(7), 4
    await evaluator.note_applied(_applied(9, 5))
    await evaluator.drain()
    (warning,) = recorder.streams["quota:acme:requests"]
    assert isinstance(warning, QuotaStateChanged)
    assert (warning.state, warning.used, views.reads) == ("warning", Decimal(9), 2)
    # An older reading arriving late changes nothing; the known state is the published one.
    await evaluator.note_applied(_applied(4, 3))
    await evaluator.drain()
    assert (views.reads, evaluator.checks) == (2, 4)


async def test_the_database_is_read_again_after_the_ttl_a_mark_or_a_new_month() -> None:
    views, recorder, clocks = Views(), Recorder(), Clocks()
    evaluator = _evaluator(views, recorder, clocks, ttl_s=30.0)
    await evaluator.check("acme")  # nothing known yet: read
    await evaluator.note_applied(_applied(1, 2))
    await evaluator.drain()
    assert views.reads == 1
    clocks.mono += 31  # limits and states may have changed in another replica
    await evaluator.note_applied(_applied(2, 3))
    await evaluator.drain()
    assert views.reads == 2
    views.month["requests"], views.version = Decimal(2), 3  # what the batches wrote
    views.lims = {**(views.lims or {}), "max_requests_per_month": 2}  # consumed here: marked
    await evaluator.mark({"acme"})
    await evaluator.drain()
    assert views.reads == 3 and recorder.streams["quota:acme:requests"][-1].state == "exceeded"  # type: ignore[attr-defined]
    clocks.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)  # a new month: its own sheet, read
    await evaluator.note_applied(_applied(2, 4))  # a late event of November
    await evaluator.drain()
    assert views.reads == 4 and recorder.streams["quota:acme:requests"][-1].state == "ok"  # type: ignore[attr-defined]


async def test_without_limits_nothing_is_read_again_until_the_ttl() -> None:
    views, recorder, clocks = Views(), Recorder(), Clocks()
    views.lims = None
    evaluator = _evaluator(views, recorder, clocks)
    for version in range(2, 7):
        await evaluator.note_applied(_applied(100, version))
        await evaluator.drain()
    assert (views.reads, evaluator.checks, recorder.streams) == (1, 4, {})
    # Limits consumed by another replica: seen when the reading that settled the usage expires.
    views.lims = {"max_requests_per_month": 100, "max_tokens_per_month": -1, "max_storage_gb": 1}
    views.month["requests"], views.version = Decimal(100), 6
    clocks.mono += 31
    evaluator.expire()
    await evaluator.drain()
    assert views.reads == 2 and recorder.streams["quota:acme:requests"][-1].state == "exceeded"  # type: ignore[attr-defined]


async def test_an_expired_reading_that_settled_nothing_is_dropped_without_a_read() -> None:
    views, recorder, clocks = Views(), Recorder(), Clocks()
    evaluator = _evaluator(views, recorder, clocks)
    await evaluator.evaluate("acme")
    clocks.mono += 31
    evaluator.expire()
    await evaluator.drain()
    assert views.reads == 1


async def test_a_limit_lowered_in_another_replica_is_noticed_when_the_reading_expires() -> None:
    views, recorder, clocks = Views(), Recorder(), Clocks()
    views.lims = {**(views.lims or {}), "max_requests_per_month": 1000}
    evaluator = _evaluator(views, recorder, clocks)
    await evaluator.evaluate("acme")
    views.lims = {**views.lims, "max_requests_per_month": 900}  # not marked here
    views.month["requests"], views.version = Decimal(760), 2  # 76 % of 1,000, 84 % of 900
    await evaluator.note_applied(_applied(760, 2))
    await evaluator.drain()
    assert (views.reads, recorder.streams) == (1, {})  # settled against the limits it read
    clocks.mono += 31
    evaluator.expire()
    await evaluator.drain()
    (warning,) = recorder.streams["quota:acme:requests"]
    assert (warning.state, warning.limit, views.reads) == ("warning", 900, 2)  # type: ignore[attr-defined]


async def test_a_ttl_of_zero_reads_on_every_evaluation() -> None:
    views, recorder, clocks = Views(), Recorder(), Clocks()
    evaluator = _evaluator(views, recorder, clocks, ttl_s=0)
    for version in range(2, 5):
        await evaluator.note_applied(_applied(1, version))
        await evaluator.drain()
    assert (views.reads, evaluator.checks) == (3, 0)


async def test_storage_applied_here_can_fall_back_without_a_read_until_its_state_changes() -> None:
    views, recorder, clocks = Views(), Recorder(), Clocks()
    evaluator = _evaluator(views, recorder, clocks)
    views.storage = Decimal(900)  # of 1,024 MB: warning
    await evaluator.evaluate("acme")
    assert recorder.streams["quota:acme:storage"][-1].state == "warning"  # type: ignore[attr-defined]
    await evaluator.note_applied(_applied(0, 2, storage=850))
    await evaluator.drain()
    assert views.reads == 1
    views.storage, views.version = Decimal(100), 3
    await evaluator.note_applied(_applied(0, 3, storage=100))
    await evaluator.drain()
    assert views.reads == 2 and recorder.streams["quota:acme:storage"][-1].state == "ok"  # type: ignore[attr-defined]


async def test_a_failed_evaluation_keeps_every_tenant_it_did_not_finish() -> None:
    class Failing(Views):
        def __init__(self) -> None:
            super().__init__()
            self.fail = True

        async def limits(self, tenant_id: str) -> dict[str, Any] | None:
            if self.fail and tenant_id == "b":
                raise ConnectionError("database gone")
            return await super().limits(tenant_id)

    views, recorder, clocks = Failing(), Recorder(), Clocks()
    evaluator = _evaluator(views, recorder, clocks)
    await evaluator.mark({"a", "b", "c"})
    with pytest.raises(ConnectionError):
        await evaluator.drain()
    views.fail = False
    await evaluator.drain()
    assert views.reads == 3  # a once, then b and c
    # The same for tenants whose applied usage was being checked.
    for tenant in ("a", "b", "c"):
        month_sheet, _ = quota_sheet_ids(tenant, "2026-11")
        await evaluator.note_applied({month_sheet: QuotaUsage(2, {"requests": Decimal(9)})})
    views.fail = True
    with pytest.raises(ConnectionError):
        await evaluator.drain()  # a's state would change: evaluated; b fails
    views.fail = False
    await evaluator.drain()
    assert views.reads == 3 + 3  # a, then (after b failed) b and c


# --- the one-pass path of requests in the documented form (parse_request) ---------------------
_IN_FORM: list[dict[str, Any]] = [
    {"event_id": "a", "meter": "tokens_in", "quantity": "10", "timestamp": "2026-11-27T11:00:00Z"},
    {
        "event_id": "b",
        "tenant_id": "acme",
        "user_id": "usr_9",
        "meter": "tokens_out",
        "quantity": "2.5",
        "cost_usd_estimate": "0.0001",
        "provider": "openai",
        "model": "gpt-4o",
        "project_id": "prj_1",
        "agent_id": None,
        "request_id": "req_1",
        "timestamp": "2026-11-27T13:00:00.123456+01:00",
        "dimensions": {"endpoint": "chat", "latency_ms": 12},
    },
    {"meter": "storage_mb", "quantity": "-3"},  # no client id: a random event id
    {"event_id": "d", "meter": "requests", "quantity": "1", "timestamp": "2026-11-25T11:00:00Z"},  # too old
    {"event_id": "a", "meter": "tokens_in", "quantity": "10", "timestamp": "2026-11-27T11:00:00Z"},  # again
]
_OFFSETS_AND_PRECISION = [
    {"event_id": "o1", "meter": "requests", "quantity": "1", "timestamp": "2026-11-27T16:30:00+05:30"},
    {
        "event_id": "o2",
        "meter": "requests",
        "quantity": "1",
        "timestamp": "2026-11-27T03:00:00.123456789-08:00",
    },
    {"event_id": "o3", "tenant_id": "acme", "meter": "tokens_in", "quantity": "0.000001"},
]
_SAME_WAY = {
    "all in form": (_IN_FORM, True),
    "offsets and precision": (_OFFSETS_AND_PRECISION, True),
    "an offset minute of 60": (
        [*_IN_FORM, {"meter": "requests", "quantity": "1", "timestamp": "2026-11-27T11:00:00+00:60"}],
        False,
    ),
    "another tenant": ([*_IN_FORM, {"tenant_id": "other", "meter": "requests", "quantity": "1"}], False),
    "a negative count": ([*_IN_FORM, {"meter": "requests", "quantity": "-1"}], False),
    "no such day": (
        [*_IN_FORM, {"meter": "requests", "quantity": "1", "timestamp": "2026-13-01T00:00:00Z"}],
        False,
    ),
    "a number for a quantity": ([*_IN_FORM, {"meter": "requests", "quantity": 1}], False),
    "an unknown field": ([*_IN_FORM, {"meter": "requests", "quantity": "1", "colour": "red"}], False),
    "an unknown meter": ([*_IN_FORM, {"meter": "bogus", "quantity": "1"}], False),
    "not an object": ([*_IN_FORM, "event"], False),
}


def _comparable(results: list[ItemResult], sink: Captured) -> tuple[Any, ...]:
    """Results and produced events with the random event ids (events without a client id) named by
    their position instead."""
    random_ids = {
        r.event_id: f"random-{r.index}" for r in results if r.client_event_id is None and r.event_id
    }
    produced = [event for _, value in sink.messages for event in json.loads(value)["payload"]["events"]]
    for event in produced:
        event["event_id"] = random_ids.get(event["event_id"], event["event_id"])
    return [r._replace(event_id=random_ids.get(r.event_id, r.event_id)) for r in results], produced


@pytest.mark.parametrize("events, one_pass", list(_SAME_WAY.values()), ids=list(_SAME_WAY))
async def test_the_one_pass_path_judges_and_produces_what_validate_items_does(
    events: list[Any], one_pass: bool
) -> None:
    body = json.dumps({"events": events}).encode()
    parsed = parse_request(body)
    fast, slow = Captured(), Captured()
    common: dict[str, Any] = {"tenant_id": "acme", "principal": "usr_1", "rules": RULES, "now": NOW}
    if parsed.canonical:  # judged on a second parse: judging fills the events in
        assert (_judge_canonical(parse_request(body).events, **common) is not None) is one_pass
    else:
        assert not one_pass
    got = await ingest_bulk(parsed.events, publisher=fast, canonical=parsed.canonical, **common)
    expected = await ingest_bulk(json.loads(body)["events"], publisher=slow, **common)
    assert _comparable(got, fast) == _comparable(expected, slow)
    if events is _IN_FORM:
        assert [(r.status, r.reason) for r in got] == [
            ("accepted", None),
            ("accepted", None),
            ("accepted", None),
            ("rejected", "timestamp_too_old"),
            ("accepted", None),
        ]


_EVENTS_IN_FORM = st.lists(
    st.fixed_dictionaries(
        {
            "meter": st.sampled_from(["tokens_in", "requests", "storage_mb"]),
            "quantity": st.sampled_from(["0", "1", "2.5", "-3", "123456789.123456"]),
        },
        optional={
            "event_id": st.text(min_size=1, max_size=8),
            "tenant_id": st.sampled_from(["acme", "other"]),
            "user_id": st.sampled_from(["usr_1", "usr_2"]),
            "cost_usd_estimate": st.sampled_from([None, "0.5", "-1"]),
            "provider": st.sampled_from(["openai", "internal"]),
            "model": st.sampled_from([None, "gpt-4o"]),
            "project_id": st.sampled_from([None, "prj_1"]),
            "request_id": st.sampled_from(["req", "r" * 201]),
            "timestamp": st.sampled_from(
                [
                    "2026-11-27T11:00:00Z",
                    "2026-11-27T12:04:00+00:00",
                    "2026-11-25T11:00:00Z",
                    "2026-11-27T12:10:00Z",
                ]
            ),
            "dimensions": st.sampled_from([{}, {"endpoint": "chat"}, {"n": 1.5}]),
        },
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(events=_EVENTS_IN_FORM)
async def test_random_requests_are_judged_and_produced_alike_either_way(events: list[dict[str, Any]]) -> None:
    body = json.dumps({"events": events}).encode()
    parsed = parse_request(body)
    fast, slow = Captured(), Captured()
    common: dict[str, Any] = {"tenant_id": "acme", "principal": "usr_1", "rules": RULES, "now": NOW}
    got = await ingest_bulk(parsed.events, publisher=fast, canonical=parsed.canonical, **common)
    expected = await ingest_bulk(json.loads(body)["events"], publisher=slow, **common)
    assert _comparable(got, fast) == _comparable(expected, slow)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"events": []}', json.dumps({"events": [{"meter": "requests"}] * 1001}).encode()],
    ids=["not JSON", "no events", "no event", "1,001 events"],
)
def test_a_body_that_is_not_a_request_is_a_validation_error(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_request(body)
