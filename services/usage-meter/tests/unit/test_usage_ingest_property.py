"""Property: whatever the delivery does (duplicates, reordering, late arrivals, crashes between any two
writes and redelivery from the committed offsets with other batch sizes, records carrying one event
or a batch of them), the aggregates equal a direct recomputation from the distinct accepted events."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usage_meter.adapters.memory_store import InMemoryUsageStore
from usage_meter.application.ingest import CrashForTest, UsageIngestor
from usage_meter.domain.model import AcceptanceRules, Delivery, UsageEntry, comparable, recompute

pytestmark = pytest.mark.unit

BASE = datetime(2026, 11, 27, 12, tzinfo=UTC)
RULES = AcceptanceRules(late_arrival_window=timedelta(hours=30), future_tolerance=timedelta(minutes=5))
PARTITIONS = 3


@st.composite
def events(draw: st.DrawFn) -> UsageEntry:
    meter = draw(st.sampled_from(["requests", "tokens_in", "tokens_out", "storage_mb"]))
    low = -50 if meter == "storage_mb" else 0
    return UsageEntry(
        event_id=draw(st.uuids()).hex,
        tenant_id=draw(st.sampled_from(["acme", "globex", "initech"])),
        user_id=draw(st.sampled_from(["u1", "u2", "u3"])),
        meter=meter,
        quantity=Decimal(draw(st.integers(low, 5000))) / Decimal(draw(st.sampled_from([1, 100, 1000000]))),
        cost=draw(st.one_of(st.none(), st.decimals("0", "3", places=6, allow_nan=False))),
        timestamp=BASE - timedelta(minutes=draw(st.integers(0, 60 * 40))),  # some beyond the window
        provider=draw(st.sampled_from(["openai", "anthropic", "local"])),
        model=draw(st.sampled_from([None, "gpt-4o", "gpt-4.1", "claude-3.5"])),
        project_id=draw(st.sampled_from([None, "p1", "p2"])),
        agent_id=draw(st.sampled_from([None, "a1"])),
    )


def partition_of(tenant: str) -> int:
    return zlib.crc32(tenant.encode()) % PARTITIONS


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[UsageEntry], list[list[list[UsageEntry]]], list[int], list[int | None]]:
    distinct = draw(st.lists(events(), min_size=1, max_size=40, unique_by=lambda e: e.event_id))
    # The log: events in a random order, some published several times (relay or client retries).
    copies = draw(st.lists(st.sampled_from(distinct), max_size=30))
    log = draw(st.permutations(distinct + copies))
    logs: list[list[UsageEntry]] = [[] for _ in range(PARTITIONS)]
    for entry in log:
        logs[partition_of(entry.tenant_id)].append(entry)
    # Kafka records: one event (run-executor) or a batch of several (bulk API), possibly with the
    # same id twice in one record.
    partitions: list[list[list[UsageEntry]]] = []
    for entries in logs:
        records: list[list[UsageEntry]] = []
        while entries:
            size = draw(st.integers(1, 4))
            records.append(entries[:size])
            entries = entries[size:]
        partitions.append(records)
    batch_sizes = draw(st.lists(st.integers(1, 15), min_size=1, max_size=10))
    crashes = draw(st.lists(st.one_of(st.none(), st.integers(0, 6)), min_size=1, max_size=10))
    return distinct, partitions, batch_sizes, crashes


async def consume(
    partitions: list[list[list[UsageEntry]]], batch_sizes: list[int], crashes: list[int | None]
) -> InMemoryUsageStore:
    """A consumer group over the partitions: getmany-like batches across partitions, offsets
    committed only after a batch succeeds, a crash (after N aggregate writes) restarts from them."""
    store = InMemoryUsageStore()
    committed = [0] * PARTITIONS
    received = BASE + timedelta(minutes=1)
    step = 0
    crashed = False
    while any(committed[p] < len(partitions[p]) for p in range(PARTITIONS)):
        size = batch_sizes[step % len(batch_sizes)]
        crash = None if crashed else crashes[step % len(crashes)]  # a restarted consumer gets through
        step += 1
        batch: list[Delivery] = []
        ends = list(committed)
        for p in range(PARTITIONS):
            for offset in range(committed[p], min(len(partitions[p]), committed[p] + size)):
                ends[p] = offset + 1
                for entry in partitions[p][offset]:
                    if RULES.timing_problem(entry.timestamp, received) is None:
                        batch.append(Delivery(p, offset, entry))
        ingestor = UsageIngestor(store, day_close_after=timedelta(hours=31), crash_after_writes=crash)
        try:
            await ingestor.apply(batch)
        except CrashForTest:
            crashed = True
            continue  # nothing committed: the next poll redelivers from the committed offsets
        committed = ends
        crashed = False
    return store


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
async def test_aggregates_equal_recomputation_under_duplicates_reordering_late_and_crashes(
    scenario: tuple[list[UsageEntry], list[list[list[UsageEntry]]], list[int], list[int | None]],
) -> None:
    distinct, partitions, batch_sizes, crashes = scenario
    store = await consume(partitions, batch_sizes, crashes)
    received = BASE + timedelta(minutes=1)
    accepted = [e for e in distinct if RULES.timing_problem(e.timestamp, received) is None]
    truth = recompute(accepted)
    assert set(store.aggregates) == set(truth)
    for agg_id, expected in truth.items():
        assert comparable(store.aggregates[agg_id]) == comparable(expected), agg_id
    assert set(store.ledger) == {e.event_id for e in accepted}
