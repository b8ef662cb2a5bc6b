"""In-memory UsageStore for unit and property tests; same contract as MongoUsageStore."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..domain.model import Aggregate, Delivery, Sheet, Stamp


class InMemoryUsageStore:
    def __init__(self) -> None:
        self.ledger: dict[str, tuple[Stamp, Delivery]] = {}
        # Payload chunks as MongoUsageStore keys them, (record stamp, day) -> owned event ids.
        self.payloads: dict[tuple[Stamp, str], set[str]] = {}
        self.members: dict[str, Stamp] = {}
        self.sheets: dict[str, Sheet] = {}
        self.days: dict[tuple[str, str], datetime] = {}

    async def claim_ledger(self, deliveries: Sequence[Delivery]) -> dict[str, Stamp]:
        for d in deliveries:
            self.ledger.setdefault(d.entry.event_id, (d.stamp, d))
        return {d.entry.event_id: d.stamp for d in deliveries if self.ledger[d.entry.event_id][0] == d.stamp}

    async def store_payloads(self, owned: Sequence[Delivery]) -> None:
        chunks: dict[tuple[Stamp, str], set[str]] = {}
        for d in owned:
            if self.ledger[d.entry.event_id][0] != d.stamp:
                raise AssertionError(f"{d.stamp} does not own {d.entry.event_id}: its payload is not its own")
            chunks.setdefault((d.stamp, d.entry.day), set()).add(d.entry.event_id)
        for key, ids in chunks.items():
            self.payloads.setdefault(key, ids)  # insert-only: a chunk stored before stays as it was

    async def claim_members(self, candidates: dict[str, tuple[str, Stamp]]) -> dict[str, Stamp]:
        for key, (_, stamp) in candidates.items():
            self.members.setdefault(key, stamp)
        return {key: self.members[key] for key in candidates}

    async def load_sheets(self, ids: Sequence[str]) -> dict[str, Sheet]:
        return {i: self.sheets[i].copy() for i in ids if i in self.sheets}

    async def save_sheet(self, sheet: Sheet) -> bool:
        stored = self.sheets.get(sheet.id)
        if (stored.version if stored else 0) != sheet.version:
            return False
        sheet.version += 1
        self.sheets[sheet.id] = sheet.copy()
        return True

    @property
    def aggregates(self) -> dict[str, Aggregate]:
        """Copies of every stored aggregate, by id (tests)."""
        return {i: a.copy() for sheet in self.sheets.values() for i, a in sheet.aggregates.items()}

    async def note_days(self, days: dict[tuple[str, str], datetime]) -> None:
        for key, close_after in days.items():
            self.days.setdefault(key, close_after)
