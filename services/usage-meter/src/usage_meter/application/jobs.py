"""Background work of the usage-meter: quota evaluation, closing days, expiring old ledger entries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel

from ailab_contracts.events.usage import DailyUsageClosed, MeterTotal, QuotaStateChanged

from ..domain.model import (
    MONTHLY_QUOTAS,
    QUOTA_THRESHOLDS,
    QuotaName,
    QuotaUsage,
    month_of,
    next_month_start,
    quota_sheet_ids,
    quota_state,
    storage_limit_mb,
)
from .ports import QuotaViews

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


@dataclass
class _KnownQuotas:
    """A tenant's quota limits and states as this process last read or published them, and its
    usage as last read or applied here (per quota sheet, the newest version seen)."""

    month: str
    limits: dict[QuotaName, int]  # empty: no limits known for the tenant
    states: dict[QuotaName, str]
    usage: dict[str, QuotaUsage]  # by sheet id (quota_sheet_ids)
    read_at: float  # monotonic
    settled: bool = False  # usage was settled in memory against these limits and states since


class QuotaEvaluator:
    """Publishes `usage.QuotaStateChanged` when a tenant's quota state changes. One evaluation per
    tenant at a time (dirty sets drained by one task); the stream version guards other processes.

    Usage this process applies (`note_applied`, after each batch: the month and running-totals
    sheets as written, with their versions) is checked in memory against the limits and states
    last read (`check`); only a state that would change, a new month, or limits and states older
    than `cache_ttl_s` make it read the database (`evaluate`, four reads per tenant: ~4 ms of CPU on
    FerretDB). A tenant's usage events all carry its key, so one partition, one consumer at a time,
    applies them; its limits change through `mark` (this process's plans consumer) at once, or,
    consumed by another replica (or states changed by one after a rebalance), within the TTL:
    a reading that settled usage is evaluated again from the database when it expires (`expire`).
    A publish is decided on limits and states read just then, and on the newest version of each
    quota sheet among that read and what this process wrote (sheet versions only grow)."""

    def __init__(
        self,
        views: QuotaViews,
        recorder: EventRecorder,
        warning_pct: int = 80,
        clock: Clock = utc_now,
        cache_ttl_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._views = views
        self._recorder = recorder
        self._pct = warning_pct
        self._clock = clock
        self._ttl = cache_ttl_s
        self._monotonic = monotonic
        self._dirty: set[str] = set()  # to evaluate from the database
        self._known: dict[str, _KnownQuotas] = {}
        # Usage applied here since the tenant was last checked (tenant -> sheet id -> newest): the
        # tenants to check against what is known.
        self._noted: dict[str, dict[str, QuotaUsage]] = {}
        self._wake = asyncio.Event()
        self.published = 0
        self.evaluations = 0  # read from the database
        self.checks = 0  # settled in memory

    async def mark(self, tenants: set[str]) -> None:
        """Evaluate these tenants from the database (their limits changed, or nothing is known)."""
        for tenant in tenants:
            self._known.pop(tenant, None)
        self._dirty |= tenants
        self._wake.set()

    async def note_applied(self, usage: dict[str, QuotaUsage]) -> None:
        """Quota sheets (month `m|…`, running totals `t|…`) as this process just stored them."""
        for sheet, reading in usage.items():
            tenant = sheet.split("|")[1]
            noted = self._noted.setdefault(tenant, {})
            noted[sheet] = QuotaUsage.newest(noted.get(sheet), reading)
        if usage:
            self._wake.set()

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        last_rollover = datetime.min.replace(tzinfo=UTC)
        last_expiry = self._monotonic()
        while not stop.is_set():
            try:
                now = self._clock()
                if now - last_rollover > timedelta(seconds=60):
                    last_rollover = now
                    await self.mark(set(await self._views.stale_quota_tenants(month_of(now))))
                if self._monotonic() - last_expiry > max(1.0, self._ttl / 2):
                    last_expiry = self._monotonic()
                    self.expire()
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
        full = sorted(self._dirty)
        quick = sorted(self._noted.keys() - self._dirty)
        self._dirty = set()
        done_full = done_quick = 0
        try:
            for tenant in full:
                await self.evaluate(tenant)
                done_full += 1
            for tenant in quick:
                await self.check(tenant)
                done_quick += 1
        except BaseException:
            # Nothing is lost: the failed tenant and those not reached yet are tried again.
            self._dirty.update(full[done_full:])
            for tenant in quick[done_quick:]:  # what the failed check merged stays in its reading
                self._noted.setdefault(tenant, {})
            raise

    async def check(self, tenant_id: str) -> list[QuotaStateChanged]:
        """`evaluate`, unless what is known settles it: recent limits and states, and usage whose
        states are the known ones (then nothing is read and nothing changes)."""
        known = self._known.get(tenant_id)
        month = month_of(self._clock())
        if known is None or known.month != month or self._monotonic() - known.read_at > self._ttl:
            return await self.evaluate(tenant_id)
        self._merge_noted(tenant_id, month, known.usage)
        if self._states(tenant_id, month, known.limits, known.usage) != known.states:
            return await self.evaluate(tenant_id)
        known.settled = True
        self.checks += 1
        return []

    async def evaluate(self, tenant_id: str) -> list[QuotaStateChanged]:
        """Read the tenant's limits, usage and quota states, and publish each state that changed."""
        previous = self._known.get(tenant_id)  # replaced below; kept if a read fails
        self.evaluations += 1
        read_at = self._monotonic()
        limits = await self._views.limits(tenant_id)
        now = self._clock()
        month = month_of(now)
        if not limits:
            self._noted.pop(tenant_id, None)  # no quota to count it against
            self._remember(tenant_id, _KnownQuotas(month, {}, {}, {}, read_at))
            return []
        usage = await self._views.quota_usage(tenant_id, month)
        if previous is not None and previous.month == month:  # a reading may be newer than this one
            for sheet, reading in previous.usage.items():
                usage[sheet] = QuotaUsage.newest(usage.get(sheet), reading)
        usage = self._merge_noted(tenant_id, month, usage)
        quota_limits: dict[QuotaName, int] = {
            "requests": int(limits["max_requests_per_month"]),
            "tokens": int(limits["max_tokens_per_month"]),
            "storage": storage_limit_mb(float(limits["max_storage_gb"])),
        }
        used_now = self._used(tenant_id, month, usage)
        computed = self._states(tenant_id, month, quota_limits, usage)
        states = await self._views.quota_states(tenant_id)
        published: list[QuotaStateChanged] = []
        final: dict[QuotaName, str] = {}
        for quota, limit in quota_limits.items():
            period = month if quota in MONTHLY_QUOTAS else "current"
            used, new = used_now[quota], computed[quota]
            current = states.get(quota) or {"state": "ok", "sequence": 0, "period": period}
            if new == current["state"]:
                final[quota] = new
                continue
            event = QuotaStateChanged(
                tenant_id=tenant_id,
                quota=quota,
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
                final[quota] = new
                await self._save(tenant_id, quota, event.sequence, new, period, limit)
            else:  # another process moved the stream: adopt its latest state, evaluate again later
                version, payload = await self._recorder.last_event(stream)
                if payload:
                    await self._save(
                        tenant_id, quota, version, payload["state"], payload["period"], payload["limit"]
                    )
                self._dirty.add(tenant_id)
        if len(final) == len(quota_limits):  # nothing left to settle: what was read can be trusted
            self._remember(tenant_id, _KnownQuotas(month, quota_limits, final, usage, read_at))
        else:
            self._known.pop(tenant_id, None)
        return published

    async def _save(self, tenant_id: str, quota: str, seq: int, state: str, period: str, limit: int) -> None:
        await self._views.save_quota_state(
            tenant_id, quota, {"sequence": seq, "state": state, "period": period, "limit": limit}
        )

    def _remember(self, tenant_id: str, known: _KnownQuotas) -> None:
        if self._ttl > 0:
            self._known[tenant_id] = known
        else:
            self._known.pop(tenant_id, None)

    def expire(self) -> None:
        """Drop readings older than the TTL; a tenant whose usage was settled against one is
        evaluated from the database again (its limits or states may have changed elsewhere since,
        and a quiet tenant would otherwise never be looked at again)."""
        oldest = self._monotonic() - self._ttl
        for tenant in [t for t, k in self._known.items() if k.read_at < oldest]:
            if self._known.pop(tenant).settled:
                self._dirty.add(tenant)

    def _merge_noted(self, tenant_id: str, month: str, usage: dict[str, QuotaUsage]) -> dict[str, QuotaUsage]:
        """`usage` with what this process applied since, where newer (other months' sheets are dropped:
        past months count for no quota)."""
        noted = self._noted.pop(tenant_id, {})
        for sheet in quota_sheet_ids(tenant_id, month):
            if sheet in noted:
                usage[sheet] = QuotaUsage.newest(usage.get(sheet), noted[sheet])
        return usage

    @staticmethod
    def _used(tenant_id: str, month: str, usage: dict[str, QuotaUsage]) -> dict[QuotaName, Decimal]:
        month_sheet, totals_sheet = quota_sheet_ids(tenant_id, month)
        of_month, totals = usage.get(month_sheet), usage.get(totals_sheet)
        zero = Decimal(0)
        return {
            "requests": of_month.used.get("requests", zero) if of_month else zero,
            "tokens": of_month.used.get("tokens", zero) if of_month else zero,
            "storage": totals.used.get("storage", zero) if totals else zero,
        }

    def _states(
        self, tenant_id: str, month: str, limits: dict[QuotaName, int], usage: dict[str, QuotaUsage]
    ) -> dict[QuotaName, str]:
        used = self._used(tenant_id, month, usage)
        return {quota: quota_state(used[quota], limit, self._pct) for quota, limit in limits.items()}


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
