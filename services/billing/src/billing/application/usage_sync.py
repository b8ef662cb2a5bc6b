"""Closed days to Stripe: `usage.DailyUsageClosed` → one Billing Meter event per billable meter,
identified by (tenant, day, meter) so a replay never double-charges; progress is the stream
`usage-sync:{tenant}:{day}` of `billing.UsageSyncStatusChanged` (pending → synced | error, retried
with exponential backoff by the billing loop)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ailab_contracts import EventEnvelope
from ailab_contracts.events.billing import UsageSyncStatusChanged
from ailab_contracts.events.usage import DailyUsageClosed
from ailab_runtime.counters import KeyedSerializer

from ..adapters.mongo_billing import BillingStore
from ..adapters.recorder import RuntimeRecorder, StreamConflict
from ..adapters.stripe_api import StripeApi, StripeFailure
from ..domain.plans import PLANS
from ..domain.rating import text
from .accounts import AccountService

log = logging.getLogger(__name__)


def sync_stream(tenant_id: str, day: str) -> str:
    return f"usage-sync:{tenant_id}:{day}"


def meter_event_identifier(tenant_id: str, day: str, meter: str) -> str:
    """Deterministic Stripe meter-event identifier: the same (tenant, day, meter) is one charge."""
    return f"{tenant_id}:{day}:{meter}"


def day_timestamp(day: str) -> int:
    """The meter event's time: noon UTC of the day it measures."""
    return int(datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp())


@dataclass(frozen=True)
class SyncSettings:
    meter_event_prefix: str
    max_attempts: int
    backoff_s: float
    backoff_max_s: float

    def next_attempt_delay(self, attempts: int) -> float:
        """Wait before the next attempt: base, 2×base, 4×base, ... capped (a stuck `pending`: base/10)."""
        if attempts <= 0:
            return self.backoff_s / 10
        return float(min(self.backoff_s * 2 ** (attempts - 1), self.backoff_max_s))


class UsageSyncService:
    def __init__(
        self,
        store: BillingStore,
        recorder: RuntimeRecorder,
        stripe: StripeApi,
        accounts: AccountService,
        settings: SyncSettings,
        serializer: KeyedSerializer | None = None,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._stripe = stripe
        self._accounts = accounts
        self._settings = settings
        self._serializer = serializer or KeyedSerializer()  # one attempt per day at a time

    async def on_day_closed(self, envelope: EventEnvelope, event: DailyUsageClosed) -> None:
        await self._store.insert_usage_day(
            {
                "_id": f"{event.tenant_id}:{event.day}",
                "tenant_id": event.tenant_id,
                "day": event.day,
                "month": event.day[:7],
                "meters": {m: t.model_dump(mode="json") for m, t in event.meters.items()},
                "closed_at": event.closed_at,
                "source_event_id": str(envelope.event_id),
            }
        )
        await self.sync(event.tenant_id, event.day)

    async def sync(self, tenant_id: str, day: str) -> str:
        """One attempt to send the day to Stripe; returns the status recorded (or already there)."""
        stream = sync_stream(tenant_id, day)
        async with self._serializer.hold(stream):
            state = await self._store.sync_state(tenant_id, day)
            if state is not None and state["status"] == "synced":
                return "synced"
            attempts = int(state["attempts"]) if state else 0
            if attempts >= self._settings.max_attempts:
                return str(state["status"]) if state else "error"
            version = await self._recorder.version(stream)
            try:
                if state is None:
                    await self._record(stream, version, tenant_id, day, "pending", [], None, 0)
                    version += 1
                try:
                    sent = await self._send(tenant_id, day)
                except (StripeFailure, _NotReady) as exc:
                    await self._record(stream, version, tenant_id, day, "error", [], str(exc), attempts + 1)
                    log.warning(
                        "usage sync failed",
                        extra={"fields": {"tenant_id": tenant_id, "day": day, "error": str(exc)[:200]}},
                    )
                    return "error"
                await self._record(stream, version, tenant_id, day, "synced", sent, None, attempts + 1)
                return "synced"
            except StreamConflict:
                return "conflict"  # another replica is syncing this day

    async def retry(self, tenant_id: str, day: str) -> dict[str, Any] | None:
        """An operator's retry of a day not synced yet, e.g. one that used up its attempts: its
        attempt count starts again (`pending`, 0 attempts), then one attempt runs now; the billing
        loop's backoff retries take over after it. Returns the day's sync state (a synced day is left
        as it is), or None when billing has no sync state for that day. Raises StreamConflict when
        another replica records for the day at the same moment."""
        stream = sync_stream(tenant_id, day)
        async with self._serializer.hold(stream):
            state = await self._store.sync_state(tenant_id, day)
            if state is None or state["status"] == "synced":
                return state
            version = await self._recorder.version(stream)
            await self._record(stream, version, tenant_id, day, "pending", [], None, 0)
        await self.sync(tenant_id, day)
        return await self._store.sync_state(tenant_id, day)

    async def retry_due(self) -> int:
        now = datetime.now(UTC)
        due = [
            state
            for state in await self._store.unsynced(self._settings.max_attempts)
            if state["at"] + timedelta(seconds=self._settings.next_attempt_delay(state["attempts"])) <= now
        ]
        for state in due:
            await self.sync(state["tenant_id"], state["day"])
        return len(due)

    async def _send(self, tenant_id: str, day: str) -> list[str]:
        usage = await self._store.usage_day(tenant_id, day)
        if usage is None:
            raise _NotReady(f"day {day} of tenant {tenant_id} has not closed")
        account = await self._store.account(tenant_id)
        if account is None:
            raise _NotReady(f"tenant {tenant_id} is not known to billing yet (no tenancy.TenantCreated)")
        plan = PLANS[account["plan"]]
        meters: dict[str, Any] = usage.get("meters") or {}
        to_send: list[tuple[str, Decimal, Decimal]] = []  # meter, value sent, day's quantity
        for rate in plan.metered_rates:
            quantity = Decimal(str(meters[rate.meter]["quantity"])) if rate.meter in meters else Decimal(0)
            if rate.gauge:
                if rate.meter not in meters:
                    continue
                # A gauge is sent as the level held at the end of the day (a `last` meter in Stripe).
                value = max(await self._store.storage_level_mb(tenant_id, day), Decimal(0))
            else:
                if quantity <= 0:
                    continue
                value = quantity
            to_send.append((rate.meter, value, quantity))
        if not to_send:
            return []
        customer_id = await self._accounts.customer_for(tenant_id)

        async def send(meter: str, value: Decimal, quantity: Decimal) -> None:
            identifier = meter_event_identifier(tenant_id, day, meter)
            if await self._store.meter_event_sent(identifier) is not None:
                return
            event_name = f"{self._settings.meter_event_prefix}{meter}"
            await self._stripe.send_meter_event(
                event_name, customer_id, text(value), identifier, day_timestamp(day)
            )
            await self._store.record_meter_event(
                {
                    "_id": identifier,
                    "tenant_id": tenant_id,
                    "day": day,
                    "month": day[:7],
                    "meter": meter,
                    "event_name": event_name,
                    "customer_id": customer_id,
                    "value": text(value),
                    "quantity": text(quantity),
                    "plan": plan.name,
                    "sent_at": datetime.now(UTC),
                }
            )

        # The day's meters are independent events in Stripe: send them side by side.
        await asyncio.gather(*(send(*item) for item in to_send))
        return [meter for meter, _, _ in to_send]

    async def _record(
        self,
        stream: str,
        version: int,
        tenant_id: str,
        day: str,
        status: str,
        meters: list[str],
        error: str | None,
        attempts: int,
    ) -> None:
        event = UsageSyncStatusChanged(
            tenant_id=tenant_id,
            day=day,
            status=status,  # type: ignore[arg-type]
            meters=meters,  # type: ignore[arg-type]
            error=error,
            attempts=attempts,
            at=datetime.now(UTC),
        )
        await self._recorder.record(stream, version, tenant_id, [event])


class _NotReady(Exception):
    """The day cannot be sent yet (its tenant or its totals are not known here)."""
