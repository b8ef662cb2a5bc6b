"""Batch consumer of `ailab.usage.events`: getmany → parse → ledger + aggregates (one UsageIngestor
call per batch) → dead letters → offset commit → watermarks. Offsets are committed only after the
whole batch's effect is stored, so a crash anywhere redelivers the batch and the ingestor completes
exactly what is missing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from pymongo.asynchronous.collection import AsyncCollection

from ailab_contracts import EventRegistry
from ailab_runtime.kafka import (
    DEFAULT_FETCH_MAX_WAIT_MS,
    dead_letter_headers,
    event_type_header,
    new_group_consumer,
)

from ..application.bulk import USAGE_BATCH_RECORDED
from ..application.ingest import ClaimedBatch, UsageIngestor
from ..domain.model import AcceptanceRules, Delivery, QuotaUsage
from .usage_records import USAGE_TYPES, Rejected, decode, decode_batch_bytes

log = logging.getLogger(__name__)


_LAG_RATIO = 1.01  # bucket width of the lag histogram: quantiles come out at most 1 % high
_LOG_LAG_RATIO = math.log(_LAG_RATIO)


class LagHistogram:
    """Event-to-aggregate lag of every event since the last clear, in constant memory: event counts
    per bucket on a log scale (bucket k holds lags in (1.01^(k-1), 1.01^k] ms; bucket 0 up to 1 ms),
    so a quantile is read in at most 1 % too high, whatever the number of events, and adding the
    events of one record is a single update (they share the record's timestamp)."""

    __slots__ = ("counts", "n", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.max: float | None = None

    def add(self, lag_ms: float, events: int = 1) -> None:
        bucket = 0 if lag_ms <= 1.0 else math.ceil(math.log(lag_ms) / _LOG_LAG_RATIO)
        self.counts[bucket] = self.counts.get(bucket, 0) + events
        self.n += events
        if self.max is None or lag_ms > self.max:
            self.max = lag_ms

    def quantile(self, q: float) -> float | None:
        """The lag at rank min(n - 1, q * n) of the events sorted by lag (its bucket's upper bound,
        never above the largest lag seen)."""
        if not self.n or self.max is None:
            return None
        rank = min(self.n - 1, int(q * self.n))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen > rank:
                return min(self.max, 1.0 if bucket == 0 else _LAG_RATIO**bucket)
        return self.max

    def quantile_ms(self, q: float) -> float | None:
        """`quantile`, rounded to 0.1 ms (what the stats and /metrics report)."""
        value = self.quantile(q)
        return None if value is None else round(value, 1)

    def clear(self) -> None:
        self.counts.clear()
        self.n = 0
        self.max = None

    def merged(self, other: LagHistogram) -> LagHistogram:
        both = LagHistogram()
        for histogram in (self, other):
            for bucket, count in histogram.counts.items():
                both.counts[bucket] = both.counts.get(bucket, 0) + count
            both.n += histogram.n
            if histogram.max is not None and (both.max is None or histogram.max > both.max):
                both.max = histogram.max
        return both


class RecentLag:
    """The lag of recent events: two histograms, each covering `window_s`, the older dropped when a
    window ends; read together, they cover the last one to two windows. What /metrics exports, so
    that its quantiles follow the present (a histogram since start-up would hide a new incident and
    keep showing an old one)."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._started = clock()
        self._current = LagHistogram()
        self._previous = LagHistogram()

    def add(self, lag_ms: float, events: int = 1) -> None:
        self._rotate()
        self._current.add(lag_ms, events)

    def histogram(self) -> LagHistogram:
        self._rotate()
        return self._previous.merged(self._current)

    def _rotate(self) -> None:
        now = self._clock()
        elapsed = now - self._started
        if elapsed < self._window_s:
            return
        # One window ended: the current becomes the previous; two or more: both are too old.
        self._previous = self._current if elapsed < 2 * self._window_s else LagHistogram()
        self._current = LagHistogram()
        self._started = now


@dataclass
class IngestStats:
    """Counters of this process's usage consumer (exposed by GET /v1/admin/usage/ingest-stats)."""

    batches: int = 0
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    aggregate_writes: int = 0
    partitions: list[int] = field(default_factory=list)  # assigned to this process now
    lags: LagHistogram = field(default_factory=LagHistogram)  # since the last reset (ingest-stats)
    recent_lags: RecentLag = field(default_factory=RecentLag)  # the last minute or two (/metrics)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def time(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def add_lag(self, lag_ms: float, events: int) -> None:
        self.lags.add(lag_ms, events)
        self.recent_lags.add(lag_ms, events)

    def snapshot(self, lag: bool = True) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "records": self.records,
            "applied": self.applied,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "skipped": self.skipped,
            "aggregate_writes": self.aggregate_writes,
            "partitions": self.partitions,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "lag_ms": (
                {
                    "p50": self.lags.quantile_ms(0.5),
                    "p99": self.lags.quantile_ms(0.99),
                    "max": self.lags.max,
                    "n": self.lags.n,
                }
                if lag
                else None
            ),
        }


@dataclass
class ParsedBatch:
    deliveries: list[Delivery] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord[bytes, bytes], str, str]] = field(default_factory=list)
    timestamps: list[tuple[int, int]] = field(default_factory=list)  # (record timestamp, its entries)
    repeated: int = 0  # same event id twice in one batch record: counted as duplicates


class UsageConsumer:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        registry: EventRegistry,
        ingestor: UsageIngestor,
        rules: AcceptanceRules,
        producer: Callable[[], AIOKafkaProducer | None],
        watermarks: AsyncCollection[dict[str, Any]],
        max_records: int = 5000,
        max_events: int = 20000,
        session_timeout_ms: int = 10_000,
        fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
        acceptance_grace: timedelta = timedelta(minutes=1),
        on_batch: Callable[[dict[str, QuotaUsage]], Awaitable[None]] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._group = group_id
        self._registry = registry
        self._ingestor = ingestor
        # A bulk API call validated the timing against its own clock just before producing; the grace
        # keeps an event accepted there from being refused here a moment later.
        self._rules = AcceptanceRules(
            late_arrival_window=rules.late_arrival_window + acceptance_grace,
            future_tolerance=rules.future_tolerance + acceptance_grace,
        )
        self._producer = producer
        self._watermarks = watermarks
        self._max_records = max_records
        self._max_events = max_events
        self._events_per_record = 1.0  # moving average: how many records make max_events
        self._session_timeout_ms = session_timeout_ms
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._on_batch = on_batch
        self.stats = IngestStats()
        self._written_marks: dict[int, datetime] = {}

    async def run(self, stop: asyncio.Event) -> None:
        consumer = new_group_consumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=min(3000, self._session_timeout_ms // 3),
        )
        await consumer.start()
        # Three-stage pipeline, batches still in offset order at every stage: while batch k is
        # applied to the aggregates (and committed), batch k+1 claims its ledger entries and batch
        # k+2 is parsed. Each stage mostly waits for the database or uses the CPU while the others
        # wait. Claims of later batches never change what an earlier batch owns (ownership goes to
        # the first stamp stored), and nothing is committed past a failed batch.
        inflight: deque[asyncio.Task[None]] = deque()  # apply stages, oldest first (at most two)
        last_claim: asyncio.Task[ClaimedBatch] | None = None
        try:
            while not stop.is_set():
                polled_at = datetime.now(UTC)
                batches = await consumer.getmany(timeout_ms=100, max_records=self._poll_size())
                self.stats.partitions = sorted(tp.partition for tp in consumer.assignment())
                parsed = self._parse(batches) if batches else None
                while inflight and (len(inflight) >= 2 or inflight[0].done()):
                    await inflight.popleft()  # raises if that batch failed: nothing more is committed
                if parsed is not None:
                    offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    claim = asyncio.create_task(self._claim(last_claim, parsed))
                    previous = inflight[-1] if inflight else None
                    inflight.append(
                        asyncio.create_task(self._apply(consumer, previous, claim, parsed, offsets, batches))
                    )
                    last_claim = claim
                elif not inflight:
                    await self._advance_watermarks(consumer, {}, polled_at, caught_up=True)
            while inflight:
                await inflight.popleft()
        finally:
            for task in [*inflight, *([last_claim] if last_claim else [])]:
                if not task.done():
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await consumer.stop()

    async def _claim(self, previous: asyncio.Task[ClaimedBatch] | None, parsed: ParsedBatch) -> ClaimedBatch:
        """The ledger stage of a batch, after the previous batch's (ledger claims in offset order)."""
        if previous is not None:
            await previous
        return await self._ingestor.claim(parsed.deliveries)

    def _poll_size(self) -> int:
        """Records to ask for: about max_events events, whether records carry one or a thousand."""
        return max(1, min(self._max_records, int(self._max_events / self._events_per_record)))

    def _parse(self, batches: dict[Any, list[ConsumerRecord[bytes, bytes]]]) -> ParsedBatch:
        parse_started = time.perf_counter()
        parsed = ParsedBatch()
        for records in batches.values():
            for record in records:
                self.stats.records += 1
                event_type = event_type_header(record)
                if event_type not in (None, *USAGE_TYPES):
                    self.stats.skipped += 1  # the meter's own closing and quota events
                    continue
                try:
                    received = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                    decoded = None
                    if event_type == USAGE_BATCH_RECORDED:
                        value = record.value or b""
                        decoded = decode_batch_bytes(self._registry, value, self._rules, received)
                    if decoded is None:
                        raw = json.loads(record.value or b"")
                        if raw.get("event_type") not in USAGE_TYPES:
                            self.stats.skipped += 1
                            continue
                        decoded = decode(self._registry, raw, self._rules, received)
                except Rejected as exc:
                    parsed.dead.append((record, exc.reason, str(exc)))
                    continue
                except Exception as exc:  # noqa: BLE001 - unparseable: dead-letter it untouched
                    parsed.dead.append((record, "invalid_event", str(exc)[:500]))
                    continue
                if decoded.problems:
                    index, reason, message = decoded.problems[0]
                    more = f" (+{len(decoded.problems) - 1} more items)" if len(decoded.problems) > 1 else ""
                    bad = ",".join(str(p[0]) for p in decoded.problems[:100])
                    parsed.dead.append((record, reason, f"items [{bad}]: {message}{more}"))
                parsed.repeated += decoded.repeated
                for entry in decoded.entries:
                    parsed.deliveries.append(Delivery(record.partition, record.offset, entry))
                if decoded.entries:
                    parsed.timestamps.append((record.timestamp, len(decoded.entries)))
        self.stats.time("parse", time.perf_counter() - parse_started)
        records = sum(len(r) for r in batches.values())
        if records:
            per_record = max(1.0, (len(parsed.deliveries) + parsed.repeated) / records)
            self._events_per_record = 0.5 * self._events_per_record + 0.5 * per_record
        return parsed

    async def _apply(
        self,
        consumer: AIOKafkaConsumer,
        previous: asyncio.Task[None] | None,
        claim: asyncio.Task[ClaimedBatch],
        parsed: ParsedBatch,
        offsets: dict[Any, int],
        batches: dict[Any, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """The aggregate stage of a batch, once it is claimed and the previous batch is applied and
        committed; then its dead letters, its offsets and the watermarks."""
        claimed = await claim
        if previous is not None:
            await previous
        result = await self._ingestor.apply_claimed(claimed)
        for stage, seconds in result.seconds.items():
            self.stats.time(stage, seconds)
        if parsed.dead:
            await self._dead_letter(parsed.dead)
        await consumer.commit(offsets)  # only after the effect is stored
        done_ms = time.time() * 1000
        self.stats.batches += 1
        self.stats.applied += result.effective
        self.stats.duplicates += result.duplicates + parsed.repeated
        self.stats.aggregate_writes += result.documents
        for timestamp, events in parsed.timestamps:
            self.stats.add_lag(done_ms - timestamp, events)
        if result.duplicates or parsed.repeated:
            count = result.duplicates + parsed.repeated
            log.info("duplicate usage events ignored", extra={"fields": {"count": count}})
        marks = {
            tp: datetime.fromtimestamp(records[-1].timestamp / 1000, UTC) for tp, records in batches.items()
        }
        await self._advance_watermarks(consumer, marks, datetime.now(UTC), caught_up=False)
        if self._on_batch and result.quota_usage:
            await self._on_batch(result.quota_usage)

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord[bytes, bytes], str, str]]) -> None:
        producer = self._producer()
        if producer is None:
            raise RuntimeError("no producer for dead letters yet")
        futures = []
        for record, reason, message in dead:
            headers = dead_letter_headers(record, reason, message, self._group)
            futures.append(
                await producer.send(
                    f"{record.topic}.dlq", value=record.value, key=record.key, headers=headers
                )
            )
        await asyncio.gather(*futures)
        self.stats.dead_lettered += len(dead)
        log.warning("usage events dead-lettered", extra={"fields": {"count": len(dead)}})

    async def _advance_watermarks(
        self, consumer: AIOKafkaConsumer, marks: dict[Any, datetime], polled_at: datetime, caught_up: bool
    ) -> None:
        """Per partition: every record published before the watermark has been applied. After a
        batch, the last applied record's time; after an empty poll with nothing in flight, the poll
        time for partitions read up to their end."""
        total = len(consumer.partitions_for_topic(self._topic) or ())
        if caught_up:
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    marks[tp] = polled_at
        for tp, mark in marks.items():
            last = self._written_marks.get(tp.partition)
            if last is not None and mark - last < timedelta(seconds=1):
                continue  # one write a second per partition is plenty for closing days
            self._written_marks[tp.partition] = mark
            await self._watermarks.update_one(
                {"_id": f"{self._group}|{tp.partition}"},
                {"$set": {"group": self._group, "wm": mark, "partitions": total}},
                upsert=True,
            )
