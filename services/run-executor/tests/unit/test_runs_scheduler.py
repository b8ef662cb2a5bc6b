"""Per-tenant concurrency: plan limits, the bounded FIFO queue, 429 with Retry-After, cancellation
while queued, and plan changes."""

from __future__ import annotations

import asyncio

import pytest

from run_executor.application.scheduler import PLAN_LIMITS, TenantScheduler
from run_executor.domain.errors import TooManyRuns

pytestmark = pytest.mark.unit


def test_plan_limits_are_the_specified_ones_and_unknown_tenants_are_free() -> None:
    assert PLAN_LIMITS == {"free": 2, "pro": 10, "enterprise": 50}
    scheduler = TenantScheduler()
    assert scheduler.limit_for(None) == 2 and scheduler.limit_for("gold") == 2
    assert scheduler.limit_for("pro") == 10 and scheduler.limit_for("enterprise") == 50


@pytest.mark.parametrize(("plan", "limit"), [(None, 2), ("free", 2), ("pro", 10), ("enterprise", 50)])
async def test_limit_running_then_twice_as_many_queued_then_refused(plan: str | None, limit: int) -> None:
    scheduler = TenantScheduler()
    tickets = [scheduler.admit("t", plan, f"r{i}") for i in range(3 * limit)]
    assert [t.state for t in tickets] == ["running"] * limit + ["queued"] * (2 * limit)
    with pytest.raises(TooManyRuns) as refused:
        scheduler.admit("t", plan, "one-too-many")
    assert refused.value.status == 429 and refused.value.code == "too_many_runs"
    assert 1 <= refused.value.retry_after_s <= 60
    assert refused.value.details == {
        "running": limit,
        "queued": 2 * limit,
        "limit": limit,
        "queue_size": 2 * limit,
    }
    # other tenants have their own limits
    assert scheduler.admit("other", plan, "x").state == "running"


async def test_queue_is_fifo_and_a_released_slot_goes_to_the_oldest() -> None:
    scheduler = TenantScheduler()
    a, b, c, d = (scheduler.admit("t", "free", n) for n in "abcd")
    stop = asyncio.Event()
    waits = [asyncio.create_task(t.wait_turn(stop)) for t in (c, d)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waits)
    a.release()
    assert await waits[0] is True and c.state == "running" and not waits[1].done()
    b.release()
    assert await waits[1] is True
    assert scheduler.stats("t") == {"running": 2, "queued": 0, "limit": 2}


async def test_a_cancelled_queued_run_leaves_the_queue() -> None:
    scheduler = TenantScheduler()
    running = [scheduler.admit("t", None, n) for n in "ab"]
    waiting = scheduler.admit("t", None, "c")
    later = scheduler.admit("t", None, "d")
    stop = asyncio.Event()
    task = asyncio.create_task(waiting.wait_turn(stop))
    await asyncio.sleep(0)
    stop.set()
    assert await task is False and waiting.state == "abandoned"
    assert scheduler.stats("t")["queued"] == 1
    running[0].release()
    assert later.state == "running"  # the abandoned ticket is skipped
    waiting.release()  # harmless
    assert scheduler.stats("t") == {"running": 2, "queued": 0, "limit": 2}


async def test_releasing_twice_frees_one_slot_only() -> None:
    scheduler = TenantScheduler()
    a = scheduler.admit("t", None, "a")
    a.release()
    a.release()
    assert scheduler.stats("t")["running"] == 0
    for name in "bc":
        assert scheduler.admit("t", None, name).state == "running"
    assert scheduler.admit("t", None, "d").state == "queued"


async def test_upgrading_the_plan_lets_queued_runs_start() -> None:
    scheduler = TenantScheduler()
    [scheduler.admit("t", "free", n) for n in "ab"]
    queued = scheduler.admit("t", "free", "c")
    assert queued.state == "queued"
    assert scheduler.admit("t", "pro", "d").state == "running"  # limit now 10: the queue drains first
    assert queued.state == "running"
    assert await queued.wait_turn(asyncio.Event()) is True


def test_retry_after_grows_with_the_queue_and_the_average_run_time() -> None:
    scheduler = TenantScheduler(max_retry_after_s=60)
    for i in range(6):
        scheduler.admit("t", None, f"r{i}")
    base = scheduler.retry_after("t")
    for _ in range(20):
        scheduler.record_duration("t", 30.0)
    assert scheduler.retry_after("t") > base
    assert scheduler.retry_after("t") <= 60
    assert scheduler.retry_after("nobody") == 1
