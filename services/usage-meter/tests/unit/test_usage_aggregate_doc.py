"""An aggregate round-trips through its stored form (groups as one JSON string), documents written
before that (nested group documents) still read the same, a sheet round-trips with each of its
aggregates, and folding a batch at once (`add_all`) equals adding event by event."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from usage_meter.domain.model import (
    Aggregate,
    Delivery,
    Folded,
    Sheet,
    UsageEntry,
    comparable,
    groups_of,
    sheet_aggregate_docs,
    sheet_id,
)

pytestmark = pytest.mark.unit


def entry(n: int, model: str, project: str | None) -> UsageEntry:
    return UsageEntry(
        event_id=f"ev-{n}",
        tenant_id="acme",
        user_id="u1",
        meter="tokens_in",
        quantity=Decimal(n) / 10,
        cost=None if n % 3 == 0 else Decimal("0.000001") * n,
        timestamp=datetime(2026, 11, 27, 12, tzinfo=UTC),
        provider="openai",
        model=model,
        project_id=project,
    )


DELIVERIES = [
    Delivery(0, 7, entry(n, model, project))
    for n, (model, project) in enumerate([("gpt-4o", "p1"), ("gpt-4o", None), ("o3", "p1"), ("o3", "p2")] * 3)
]


def test_folding_a_batch_at_once_equals_adding_each_event() -> None:
    one_by_one, at_once = Aggregate("d|acme|2026-11-27|tokens_in"), Aggregate("d|acme|2026-11-27|tokens_in")
    for d in DELIVERIES:
        one_by_one.add(d.entry, d.stamp)
    at_once.add_all(DELIVERIES, ["unique_users"])
    assert comparable(at_once)[:3] == comparable(one_by_one)[:3] and at_once.groups == one_by_one.groups
    assert at_once.positions == {0: 7} and at_once.unique_users == 1


def test_one_fold_serves_several_documents() -> None:
    folded = Folded.of(DELIVERIES + [Delivery(1, 3, entry(99, "o3", "p1"))])
    assert (folded.first, folded.last, folded.stamps) == ({0: 7, 1: 3}, {0: 7, 1: 3}, {(0, 7), (1, 3)})
    for agg_id in ("d|acme|2026-11-27|tokens_in", "m|acme|2026-11|tokens_in"):
        shared, own = Aggregate(agg_id), Aggregate(agg_id)
        shared.add_folded(folded)
        own.add_all([*DELIVERIES, Delivery(1, 3, entry(99, "o3", "p1"))])
        assert comparable(shared) == comparable(own) and shared.positions == own.positions == {0: 7, 1: 3}


def test_the_stored_form_round_trips_and_older_nested_groups_still_read() -> None:
    agg = Aggregate("d|acme|2026-11-27|tokens_in")
    agg.add_all(DELIVERIES)
    doc = agg.to_doc()
    assert isinstance(doc["groups"], str)
    back = Aggregate.from_doc(doc)
    assert comparable(back) == comparable(agg) and back.positions == agg.positions
    older = {**doc, "groups": groups_of(doc)}  # as documents were stored before
    assert comparable(Aggregate.from_doc(older)) == comparable(agg)
    assert [g["k"] for g in groups_of(older)["model"]] == ["gpt-4o", "o3"]


def test_a_sheet_round_trips_and_reads_as_one_document_per_meter() -> None:
    tokens, requests = Aggregate("m|acme|2026-11|tokens_in"), Aggregate("m|acme|2026-11|requests")
    tokens.add_all(DELIVERIES, ["unique_users"])
    requests.add_all([Delivery(3, 9, DELIVERIES[0].entry)])
    assert sheet_id(tokens.id) == sheet_id(requests.id) == "m|acme|2026-11"
    sheet = Sheet("m|acme|2026-11", {tokens.id: tokens, requests.id: requests}, version=4)
    doc = sheet.to_doc()
    assert (doc["_id"], doc["tenant_id"], doc["kind"], doc["period"], doc["v"]) == (
        "m|acme|2026-11",
        "acme",
        "m",
        "2026-11",
        4,
    )
    back = Sheet.from_doc(doc)
    assert back.version == 4 and set(back.aggregates) == {tokens.id, requests.id}
    for agg in (tokens, requests):
        assert comparable(back.aggregates[agg.id]) == comparable(agg)
        assert back.aggregates[agg.id].positions == agg.positions
    # What the read side sees: the documents the aggregates were stored as, one per meter.
    assert sorted(sheet_aggregate_docs(doc), key=lambda d: d["_id"]) == [requests.to_doc(), tokens.to_doc()]
    before = (comparable(tokens), dict(tokens.positions))
    copy = sheet.copy()
    copy.aggregates[tokens.id].add(DELIVERIES[0].entry, (5, 1))
    assert comparable(copy.aggregates[tokens.id]) != before[0]
    assert (comparable(sheet.aggregates[tokens.id]), sheet.aggregates[tokens.id].positions) == before
