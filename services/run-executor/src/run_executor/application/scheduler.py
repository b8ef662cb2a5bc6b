"""Per-tenant concurrency: at most `limit` runs of a tenant execute at once (free 2, pro 10,
enterprise 50 by default); up to `queue_factor x limit` more wait `queued` in FIFO order; beyond
that a new run is refused (`too_many_runs`, with a Retry-After estimate).

In-process and synchronous where it matters: `admit` decides and reserves without awaiting, so two
requests can never take the same slot. The limit applies per executor process (run one replica,
as the README says for FerretDB; several replicas would each allow the limit).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..domain.errors import TooManyRuns

PLAN_LIMITS: dict[str, int] = {"free": 2, "pro": 10, "enterprise": 50}
DEFAULT_PLAN = "free"


class Ticket:
    """A run's place in its tenant's scheduler: `running` (holds a slot) or `queued`."""

    def __init__(self, scheduler: TenantScheduler, tenant_id: str, run_id: str, running: bool) -> None:
        self._scheduler = scheduler
        self.tenant_id = tenant_id
        self.run_id = run_id
        self.state = "running" if running else "queued"
        self._granted = asyncio.Event()
        if running:
            self._granted.set()

    async def wait_turn(self, stop: asyncio.Event) -> bool:
        """True once the run holds a slot; False when `stop` is set first (the ticket leaves the queue)."""
        if self.state == "running":
            return True
        if self.state != "queued":
            return False
        turn = asyncio.ensure_future(self._granted.wait())
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({turn, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            turn.cancel()
            waiter.cancel()
        if self._granted.is_set():
            return True
        self._scheduler.abandon(self)
        return False

    def release(self) -> None:
        self._scheduler.release(self)


@dataclass
class _TenantState:
    limit: int
    running: int = 0
    queue: deque[Ticket] = field(default_factory=deque)
    avg_run_s: float = 5.0


class TenantScheduler:
    def __init__(
        self,
        limits: Mapping[str, int] | None = None,
        *,
        queue_factor: int = 2,
        default_plan: str = DEFAULT_PLAN,
        max_retry_after_s: int = 60,
    ) -> None:
        self._limits = dict(limits or PLAN_LIMITS)
        self._factor = queue_factor
        self._default = default_plan
        self._max_retry = max_retry_after_s
        self._tenants: dict[str, _TenantState] = {}

    def limit_for(self, plan: str | None) -> int:
        """The concurrency limit of a plan (unknown plans and tenants get the default plan's)."""
        return self._limits.get(plan or self._default, self._limits[self._default])

    def _state(self, tenant_id: str, limit: int) -> _TenantState:
        state = self._tenants.get(tenant_id)
        if state is None:
            state = self._tenants[tenant_id] = _TenantState(limit=limit)
        elif state.limit != limit:
            state.limit = limit
            self._grant(state)  # a bigger plan lets queued runs go now
        return state

    def admit(self, tenant_id: str, plan: str | None, run_id: str) -> Ticket:
        """A running or queued ticket; raises TooManyRuns when the tenant's queue is full too."""
        limit = self.limit_for(plan)
        state = self._state(tenant_id, limit)
        if state.running < state.limit and not state.queue:
            state.running += 1
            return Ticket(self, tenant_id, run_id, running=True)
        capacity = self._factor * state.limit
        if len(state.queue) < capacity:
            ticket = Ticket(self, tenant_id, run_id, running=False)
            state.queue.append(ticket)
            return ticket
        raise TooManyRuns(
            f"tenant {tenant_id} has {state.running} runs executing and {len(state.queue)} queued, "
            f"the most its plan allows ({state.limit} + {capacity} queued); retry later",
            self.retry_after(tenant_id),
            {
                "running": state.running,
                "queued": len(state.queue),
                "limit": state.limit,
                "queue_size": capacity,
            },
        )

    def retry_after(self, tenant_id: str) -> int:
        """Seconds until a slot is likely free: the average run time x the runs ahead / the limit."""
        state = self._tenants.get(tenant_id)
        if state is None:
            return 1
        ahead = len(state.queue) + 1
        estimate = math.ceil(state.avg_run_s * ahead / max(state.limit, 1))
        return max(1, min(self._max_retry, estimate))

    def record_duration(self, tenant_id: str, seconds: float) -> None:
        state = self._tenants.get(tenant_id)
        if state is not None and seconds >= 0:
            state.avg_run_s = 0.8 * state.avg_run_s + 0.2 * seconds

    def release(self, ticket: Ticket) -> None:
        state = self._tenants.get(ticket.tenant_id)
        if state is None or ticket.state not in ("running", "queued"):
            return
        if ticket.state == "queued":
            self.abandon(ticket)
            return
        ticket.state = "released"
        state.running -= 1
        self._grant(state)

    def abandon(self, ticket: Ticket) -> None:
        state = self._tenants.get(ticket.tenant_id)
        if state is None or ticket.state != "queued":
            return
        ticket.state = "abandoned"
        try:
            state.queue.remove(ticket)
        except ValueError:
            pass

    def _grant(self, state: _TenantState) -> None:
        while state.running < state.limit and state.queue:
            ticket = state.queue.popleft()
            ticket.state = "running"
            state.running += 1
            ticket._granted.set()

    def stats(self, tenant_id: str) -> dict[str, int]:
        state = self._tenants.get(tenant_id)
        if state is None:
            return {"running": 0, "queued": 0, "limit": self.limit_for(None)}
        return {"running": state.running, "queued": len(state.queue), "limit": state.limit}
