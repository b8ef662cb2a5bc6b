"""Ports of the usage-meter's write and read side; Mongo adapters and in-memory fakes implement them
(tests/unit/test_usage_store_contract.py runs one contract against both)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from ..domain.model import Delivery, QuotaUsage, Sheet, Stamp


class UsageStore(Protocol):
    async def claim_ledger(self, deliveries: Sequence[Delivery]) -> dict[str, Stamp]:
        """Insert ledger entries (one per event id, insert-only); returns, for each event id whose
        stored entry is owned by one of the given deliveries (the first delivery ever stored, or a
        redelivery of it), that delivery's stamp. Ids owned by other deliveries (duplicates) are
        absent."""
        ...

    async def store_payloads(self, owned: Sequence[Delivery]) -> None:
        """Keep the payloads of claimed events for export: `owned` are the deliveries that own their
        events, each event once (insert-only: a redelivery stores the same again, to no effect)."""
        ...

    async def claim_members(self, candidates: dict[str, tuple[str, Stamp]]) -> dict[str, Stamp]:
        """Insert set members `key -> (tenant, stamp)` (insert-only); returns each key's owning stamp."""
        ...

    async def load_sheets(self, ids: Sequence[str]) -> dict[str, Sheet]:
        """Copies of the stored sheets among `ids` (absent: none stored yet)."""
        ...

    async def save_sheet(self, sheet: Sheet) -> bool:
        """Store `sheet` if the stored version is still `sheet.version` (0: none stored), then bump
        it; False when another writer got there first."""
        ...

    async def note_days(self, days: dict[tuple[str, str], datetime]) -> None:
        """Remember that tenant × day has usage and may close at the given time (insert-only)."""
        ...


class QuotaViews(Protocol):
    """What quota evaluation reads and writes (MongoUsageViews; the unit tests' in-memory views)."""

    async def limits(self, tenant_id: str) -> dict[str, Any] | None: ...

    async def quota_usage(self, tenant_id: str, month: str) -> dict[str, QuotaUsage]:
        """The tenant's month sheet and running-totals sheet as quota evaluation reads them."""
        ...

    async def quota_states(self, tenant_id: str) -> dict[str, dict[str, Any]]: ...

    async def save_quota_state(self, tenant_id: str, quota: str, state: dict[str, Any]) -> None: ...

    async def stale_quota_tenants(self, month: str) -> list[str]: ...
