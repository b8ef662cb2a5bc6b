"""Applies batches of delivered usage events to the ledger and the aggregates with exactly-once effect.

Why it is exactly once under at-least-once delivery (redelivery, duplicates, crashes mid-batch):
- The ledger is insert-only, keyed by event id, and every entry remembers the (partition, offset)
  *stamp* of the delivery that stored it. A delivery whose stamp owns the entry is *effective*: the
  first copy of the event, or a redelivery of that same Kafka record after a crash. Any other copy is
  a duplicate and is only counted.
- One Kafka record may carry many events (a bulk batch): they share the record's stamp, and all of
  them are folded into a document in the same write, so the stamp still says "in or not".
- Each aggregate document stores, per partition, the highest offset it has applied, and is replaced
  as a whole in one version-guarded write. An effective delivery is folded into a document only if
  its offset is above that position. Records of one partition are applied in offset order and a batch
  is committed to Kafka only after every document is written, so everything at or below the position
  is already in the document, and everything above it is not.
- Unique users/projects are insert-only set members stamped the same way: an insert that succeeds,
  or a member owned by a delivery in this batch (the crash window), adds one to the counter, again
  guarded by the document's position.
A crash between any two writes therefore leaves a state from which redelivering the uncommitted
records completes exactly the missing effects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..domain.model import Aggregate, Delivery, Stamp, aggregate_ids, day_start, member_keys
from .ports import UsageStore

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    effective: int = 0
    duplicates: int = 0
    documents: int = 0
    tenants: set[str] = field(default_factory=set)
    seconds: dict[str, float] = field(default_factory=dict)  # time per stage (ledger, members, aggregates)


class CrashForTest(Exception):
    """Raised by a test-only crash point between aggregate writes."""


class UsageIngestor:
    def __init__(
        self,
        store: UsageStore,
        *,
        day_close_after: timedelta,
        crash_after_writes: int | None = None,
    ) -> None:
        self._store = store
        self._close_after = day_close_after
        self._crash_after = crash_after_writes  # tests: fail after this many aggregate writes

    async def apply(self, deliveries: Sequence[Delivery]) -> BatchResult:
        result = BatchResult()
        if not deliveries:
            return result
        started = time.perf_counter()
        owners = await self._store.claim_ledger(deliveries)
        result.seconds["ledger"] = time.perf_counter() - started
        effective: list[Delivery] = []
        seen: set[str] = set()
        for d in deliveries:
            # The owning delivery counts, once (a record could carry an id twice).
            if owners.get(d.entry.event_id) == d.stamp and d.entry.event_id not in seen:
                seen.add(d.entry.event_id)
                effective.append(d)
        result.effective = len(effective)
        result.duplicates = len(deliveries) - len(effective)
        if not effective:
            return result

        # Set members (unique users / projects): candidates with every stamp that could own them.
        member_stamps: dict[str, list[Stamp]] = defaultdict(list)
        member_meta: dict[str, tuple[str, str, str]] = {}  # key -> (tenant, aggregate id, counter)
        contributions: dict[str, list[Delivery]] = defaultdict(list)
        days: dict[tuple[str, str], datetime] = {}
        for d in effective:
            entry = d.entry
            result.tenants.add(entry.tenant_id)
            tenant_day = (entry.tenant_id, entry.day)
            if tenant_day not in days:
                days[tenant_day] = day_start(entry.day) + timedelta(days=1) + self._close_after
            for agg_id in aggregate_ids(entry):
                contributions[agg_id].append(d)
                for key, counter in member_keys(agg_id, entry):
                    member_stamps[key].append(d.stamp)
                    member_meta[key] = (entry.tenant_id, agg_id, counter)
        started = time.perf_counter()
        owners_of_members = await self._store.claim_members(
            {key: (member_meta[key][0], stamps[0]) for key, stamps in member_stamps.items()}
        )
        counters: dict[tuple[str, Stamp], list[str]] = defaultdict(list)
        for key, stamps in member_stamps.items():
            owner = owners_of_members[key]
            if owner in stamps:
                _, agg_id, counter = member_meta[key]
                counters[(agg_id, owner)].append(counter)

        await self._store.note_days(days)
        result.seconds["members"] = time.perf_counter() - started
        started = time.perf_counter()
        aggregates = await self._store.load_aggregates(list(contributions))
        if self._crash_after is None:
            # Distinct documents, one writer each: their writes can go out together.
            saved = await asyncio.gather(
                *(self._save(agg_id, items, aggregates, counters) for agg_id, items in contributions.items())
            )
            result.documents = sum(saved)
        else:
            for agg_id, items in contributions.items():
                if result.documents >= self._crash_after:
                    raise CrashForTest(f"crash after {result.documents} aggregate writes")
                result.documents += await self._save(agg_id, items, aggregates, counters)
        result.seconds["aggregates"] = time.perf_counter() - started
        return result

    async def _save(
        self,
        agg_id: str,
        items: list[Delivery],
        aggregates: dict[str, Aggregate],
        counters: dict[tuple[str, Stamp], list[str]],
    ) -> int:
        """Fold the deliveries not yet in the document into it and store it; 1 if written."""
        for _attempt in range(5):
            agg = aggregates.get(agg_id) or Aggregate(agg_id)
            pending = [d for d in items if not agg.applied(d.stamp)]
            if not pending:
                return 0
            counted: set[Stamp] = set()  # a record's new members count once, with its first event
            for d in pending:
                new_members: Sequence[str] = ()
                if d.stamp not in counted:
                    counted.add(d.stamp)
                    new_members = counters.get((agg_id, d.stamp), ())
                agg.add(d.entry, d.stamp, new_members)
            if await self._store.save_aggregate(agg):
                return 1
            log.warning("aggregate changed by another writer; reloading", extra={"fields": {"id": agg_id}})
            aggregates.pop(agg_id, None)
            aggregates.update(await self._store.load_aggregates([agg_id]))
        raise RuntimeError(f"aggregate {agg_id} kept changing under this writer")
