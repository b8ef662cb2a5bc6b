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

from ..domain.model import Aggregate, Delivery, Stamp, aggregate_ids, day_start, member_key
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
        concurrent_writes: int = 4,
    ) -> None:
        self._store = store
        self._concurrent_writes = concurrent_writes
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
        # Hot loop (every event): aggregate ids once per tenant × day × meter, member keys as tuples
        # (made strings once per distinct member), each stamp listed once per member.
        member_stamps: dict[tuple[str, str, str], list[Stamp]] = {}
        member_meta: dict[tuple[str, str, str], tuple[str, str]] = {}  # -> (tenant, counter)
        contributions: dict[str, list[Delivery]] = defaultdict(list)
        days: dict[tuple[str, str], datetime] = {}
        ids_of: dict[tuple[str, str, str], list[str]] = {}
        for d in effective:
            entry = d.entry
            stamp = d.stamp
            where = (entry.tenant_id, entry.day, entry.meter)
            agg_ids = ids_of.get(where)
            if agg_ids is None:
                agg_ids = ids_of[where] = aggregate_ids(entry)
                result.tenants.add(entry.tenant_id)
                if where[:2] not in days:
                    days[where[:2]] = day_start(entry.day) + timedelta(days=1) + self._close_after
            for agg_id in agg_ids:
                contributions[agg_id].append(d)
                members = [(agg_id, "u", entry.user_id)]
                if entry.project_id:
                    members.append((agg_id, "p", entry.project_id))
                for member in members:
                    stamps = member_stamps.get(member)
                    if stamps is None:
                        member_stamps[member] = [stamp]
                        counter = "unique_users" if member[1] == "u" else "unique_projects"
                        member_meta[member] = (entry.tenant_id, counter)
                    elif stamps[-1] != stamp:
                        stamps.append(stamp)
        started = time.perf_counter()
        keys = {member: member_key(*member) for member in member_stamps}
        owners_of_members = await self._store.claim_members(
            {keys[m]: (member_meta[m][0], stamps[0]) for m, stamps in member_stamps.items()}
        )
        counters: dict[tuple[str, Stamp], list[str]] = defaultdict(list)
        for member, stamps in member_stamps.items():
            owner = owners_of_members[keys[member]]
            if owner in stamps:
                counters[(member[0], owner)].append(member_meta[member][1])

        await self._store.note_days(days)
        result.seconds["members"] = time.perf_counter() - started
        started = time.perf_counter()
        aggregates = await self._store.load_aggregates(list(contributions))
        if self._crash_after is None:
            # Distinct documents, one writer each: their writes can go out together, a few at a time.
            # FerretDB 1.24 holds one pooled PostgreSQL connection per update while it takes a second
            # one; with as many updates in flight as its pool has connections (50), all of them wait
            # forever. A few at a time is as fast and leaves room for the other services.
            slots = asyncio.Semaphore(self._concurrent_writes)

            async def save(agg_id: str, items: list[Delivery]) -> int:
                async with slots:
                    return await self._save(agg_id, items, aggregates, counters)

            saved = await asyncio.gather(*(save(agg_id, items) for agg_id, items in contributions.items()))
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
            positions = agg.positions  # agg.applied(stamp), inlined: once per event and document
            pending = [d for d in items if d.offset > positions.get(d.partition, -1)]
            if not pending:
                return 0
            # A record's new members count once, however many of its events are here.
            stamps = {d.stamp for d in pending}
            agg.add_all(pending, [c for stamp in stamps for c in counters.get((agg_id, stamp), ())])
            if await self._store.save_aggregate(agg):
                return 1
            log.warning("aggregate changed by another writer; reloading", extra={"fields": {"id": agg_id}})
            aggregates.pop(agg_id, None)
            aggregates.update(await self._store.load_aggregates([agg_id]))
        raise RuntimeError(f"aggregate {agg_id} kept changing under this writer")
