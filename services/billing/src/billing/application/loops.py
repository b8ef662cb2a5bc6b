"""The billing loop: retries due usage syncs, suspends tenants past their grace period, and
invoices ended months. One pass every `BILLING_LOOP_INTERVAL_S`; each step is idempotent."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .invoices import InvoiceService
from .usage_sync import UsageSyncService
from .webhooks import WebhookService

log = logging.getLogger(__name__)


class BillingLoop:
    def __init__(
        self, sync: UsageSyncService, webhooks: WebhookService, invoices: InvoiceService, interval_s: float
    ) -> None:
        self._sync = sync
        self._webhooks = webhooks
        self._invoices = invoices
        self._interval = interval_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> None:
        await self._sync.retry_due()
        await self._webhooks.suspend_due()
        await self._invoices.close_due()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("billing loop pass failed; next pass retries")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="billing-loop")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
