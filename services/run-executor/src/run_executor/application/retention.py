"""Retention of run data: a periodic job deletes the logs and spans of runs finished more than
`RUN_LOG_RETENTION_DAYS` ago, and the executor claims of runs finished more than
`RUN_CLAIM_RETENTION_DAYS` ago (claims matter only while a run is active). Runs themselves and their
events are kept. No TTL index: FerretDB has none, so every service expires data with a job like this.
Every executor instance runs it; the deletes are idempotent, so instances never conflict.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger("run_executor.retention")


class RunDataPurge(Protocol):
    """Deletes, in bounded batches, data of runs whose `finished_at` is before a time."""

    async def purge_logs_and_spans(self, finished_before: datetime) -> tuple[int, int]:
        """Returns how many logs and spans were deleted."""
        ...

    async def purge_claims(self, finished_before: datetime) -> int: ...


@dataclass(frozen=True)
class RetentionSettings:
    log_retention: timedelta = timedelta(days=30)
    claim_retention: timedelta = timedelta(days=1)
    interval_s: float = 3600.0


@dataclass(frozen=True)
class RetentionPass:
    logs: int
    spans: int
    claims: int


class RunRetention:
    def __init__(self, store: RunDataPurge, settings: RetentionSettings | None = None) -> None:
        self._store = store
        self.settings = settings or RetentionSettings()

    async def run_once(self, now: datetime | None = None) -> RetentionPass:
        """One cleanup pass; `now` only for tests and tools that look at another day."""
        now = now or datetime.now(UTC)
        logs, spans = await self._store.purge_logs_and_spans(now - self.settings.log_retention)
        claims = await self._store.purge_claims(now - self.settings.claim_retention)
        done = RetentionPass(logs=logs, spans=spans, claims=claims)
        log.info(
            "run data retention pass: deleted %d logs, %d spans, %d claims",
            logs,
            spans,
            claims,
            extra={"fields": {"deleted_logs": logs, "deleted_spans": spans, "deleted_claims": claims}},
        )
        return done

    async def run_forever(self) -> None:
        """A pass at start, then one every `interval_s`; a failed pass is logged and retried later."""
        while True:
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - the next pass retries
                log.exception("run data retention pass failed")
            await asyncio.sleep(self.settings.interval_s)
