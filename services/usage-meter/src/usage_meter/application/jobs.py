"""Background work of the usage-meter: quota evaluation, closing days, expiring old ledger entries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel

from ailab_contracts.events.usage import DailyUsageClosed, MeterTotal, QuotaStateChanged

from ..domain.model import (
    MONTHLY_QUOTAS,
    QUOTA_THRESHOLDS,
    month_of,
    next_month_start,
    quota_state,
    storage_limit_mb,
)

log = logging.getLogger(__name__)


class EventRecorder(Protocol):
    async def record_once(
        self, stream_id: str, expected_version: int, tenant_id: str, event: BaseModel
    ) -> bool:
        """Append one event at `expected_version + 1`; False if the stream is already further."""
        ...

    async def last_event(self, stream_id: str) -> tuple[int, dict[str, Any] | None]: ...


Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class QuotaEvaluator:
    """Publishes `usage.QuotaStateChanged` when a tenant's quota state changes. One evaluation per
    tenant at a time (dirty set drained by one task); the stream version guards other processes."""

    def __init__(
        self, views: Any, recorder: EventRecorder, warning_pct: int = 80, clock: Clock = utc_now
    ) -> None:
        self._views = views
        self._recorder = recorder
        self._pct = warning_pct
        self._clock = clock
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self.published = 0

    async def mark(self, tenants: set[str]) -> None:
        self._dirty |= tenants
        self._wake.set()

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        last_rollover = datetime.min.replace(tzinfo=UTC)
        while not stop.is_set():
            try:
                now = self._clock()
                if now - last_rollover > timedelta(seconds=60):
                    last_rollover = now
                    self._dirty |= set(await self._views.stale_quota_tenants(month_of(now)))
                await self.drain()
            except Exception:
                log.exception("quota evaluation failed; retrying")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), interval_s)
            except TimeoutError:
                pass
            await asyncio.sleep(min(interval_s, 0.2))  # coalesce bursts of batches

    async def drain(self) -> None:
        tenants, self._dirty = self._dirty, set()
        for tenant in sorted(tenants):
            try:
                await self.evaluate(tenant)
            except Exception:
                self._dirty.add(tenant)
                raise

    async def evaluate(self, tenant_id: str) -> list[QuotaStateChanged]:
        limits = await self._views.limits(tenant_id)
        if not limits:
            return []
        now = self._clock()
        month = month_of(now)
        usage = await self._usage(tenant_id, month)
        quota_limits = {
            "requests": int(limits["max_requests_per_month"]),
            "tokens": int(limits["max_tokens_per_month"]),
            "storage": storage_limit_mb(float(limits["max_storage_gb"])),
        }
        states = await self._views.quota_states(tenant_id)
        published: list[QuotaStateChanged] = []
        for quota, limit in quota_limits.items():
            period = month if quota in MONTHLY_QUOTAS else "current"
            used = usage[quota]
            new = quota_state(used, limit, self._pct)
            current = states.get(quota) or {"state": "ok", "sequence": 0, "period": period}
            if new == current["state"]:
                continue
            event = QuotaStateChanged(
                tenant_id=tenant_id,
                quota=quota,  # type: ignore[arg-type]
                period=period,
                limit=limit,
                used=used,
                state=new,  # type: ignore[arg-type]
                previous_state=current["state"],
                threshold_pct=QUOTA_THRESHOLDS[new],
                resets_at=next_month_start(month) if quota in MONTHLY_QUOTAS else None,
                sequence=int(current["sequence"]) + 1,
            )
            stream = f"quota:{tenant_id}:{quota}"
            if await self._recorder.record_once(stream, int(current["sequence"]), tenant_id, event):
                published.append(event)
                self.published += 1
                await self._save(tenant_id, quota, event.sequence, new, period, limit)
            else:  # another process moved the stream: adopt its latest state, evaluate again later
                version, payload = await self._recorder.last_event(stream)
                if payload:
                    await self._save(
                        tenant_id, quota, version, payload["state"], payload["period"], payload["limit"]
                    )
                self._dirty.add(tenant_id)
        return published

    async def _save(self, tenant_id: str, quota: str, seq: int, state: str, period: str, limit: int) -> None:
        await self._views.save_quota_state(
            tenant_id, quota, {"sequence": seq, "state": state, "period": period, "limit": limit}
        )

    async def _usage(self, tenant_id: str, month: str) -> dict[str, Decimal]:
        docs = await self._views.aggregates(tenant_id, "m", month, month)
        by_meter = {d["meter"]: Decimal(d["quantity"]) for d in docs}
        return {
            "requests": by_meter.get("requests", Decimal(0)),
            "tokens": by_meter.get("tokens_in", Decimal(0)) + by_meter.get("tokens_out", Decimal(0)),
            "storage": await self._views.total(tenant_id, "storage_mb"),
        }


class DayCloser:
    """Closes tenant days whose late-arrival window has passed *and* whose events are all consumed
    (the consumer group's watermark is past the close time), publishing `usage.DailyUsageClosed`;
    also days a platform admin asked to close early, once the watermark is past the request."""

    def __init__(self, views: Any, recorder: EventRecorder, group: str, clock: Clock = utc_now) -> None:
        self._views = views
        self._recorder = recorder
        self._group = group
        self._clock = clock
        self.closed = 0

    async def close_due(self) -> int:
        watermark = await self._views.watermark(self._group)
        if watermark is None:
            return 0
        until = min(watermark, self._clock())
        count = 0
        for day_doc in await self._views.closable_days(until):
            await self._close(day_doc["tenant_id"], day_doc["day"])
            count += 1
        # Days an operator closed early: once everything published before the request is applied.
        for request in await self._views.close_requests(until):
            day_doc = await self._views.day(request["tenant_id"], request["day"])
            if day_doc is not None and not day_doc.get("closed"):
                await self._close(request["tenant_id"], request["day"])
                count += 1
            await self._views.drop_close_request(request["tenant_id"], request["day"])
        self.closed += count
        return count

    async def _close(self, tenant: str, day: str) -> None:
        docs = await self._views.aggregates(tenant, "d", day, day)
        now = self._clock()
        event = DailyUsageClosed(
            tenant_id=tenant,
            day=day,
            meters={
                d["meter"]: MeterTotal(
                    quantity=Decimal(d["quantity"]),
                    cost_usd_estimate=Decimal(d["cost"]),
                    events=d["events"],
                    unique_users=d["unique_users"],
                    unique_projects=d["unique_projects"],
                )
                for d in docs
            },
            closed_at=now,
        )
        await self._recorder.record_once(
            f"usage-day:{tenant}:{day}", 0, tenant, event
        )  # False: closed before
        await self._views.mark_closed(tenant, day, now)


async def periodic(
    stop: asyncio.Event, interval_s: float, job: Callable[[], Awaitable[Any]], name: str
) -> None:
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception("%s failed; retrying", name)
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass
