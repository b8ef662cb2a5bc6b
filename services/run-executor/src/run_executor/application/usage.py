"""Usage of runs as `usage.UsageRecorded` events (exactly the v1 contract).

Every provider call, successful or not, yields `requests` = 1, plus `tokens_in` and `tokens_out`
from the usage the provider reported (`total_input_tokens` / `total_output_tokens`; for a failed or
cancelled call, what it had reported before it stopped). When no usage was reported, the token
meters are not invented: only `requests` is recorded, with `usage_reported: false`.

The call's cost estimate is split over its token events: `tokens_in` carries the prompt part (fresh,
cached and cache-write tokens), `tokens_out` the rest, so the sum over a call's events is its
estimate; `requests` carries none. A model without a price gets `cost_usd_estimate: null` (never 0)
and `cost_status: "unpriced"`. Each run also records `compute_seconds` (its wall time).

Each call is one commit on its own stream `usage:{tenant}:{run_id}:{n}` (expected version 0), so
usage never conflicts with the run stream and a retried write is recognised as already recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from ailab_contracts.events.usage import PROVIDERS, UsageRecorded

from ..engine.engine import ProviderCall, RunScope


def usage_stream(tenant_id: str, run_id: str, part: int | str) -> str:
    return f"usage:{tenant_id}:{run_id}:{part}"


def _plain(value: Decimal) -> Decimal:
    """`0E-10` -> `0`, `0.0000028500` -> `0.00000285`: the same number, without noise digits."""
    return value.normalize() if value else Decimal(0)


def _ids(scope: RunScope) -> dict[str, Any]:
    return {
        "tenant_id": scope.tenant_id,
        "user_id": scope.user_id or "system",
        "project_id": scope.project_id,
        "agent_id": scope.agent_id,
        "run_id": scope.run_id,
        "request_id": (scope.request_id or scope.run_id)[:200],
    }


def call_usage_events(
    scope: RunScope, call: ProviderCall, at: datetime, provider_kind: Callable[[str], str] = lambda n: n
) -> list[UsageRecorded]:
    """The usage events of one provider call (empty when the provider is not a configured one: such a
    request never left the process)."""
    kind = provider_kind(call.provider)
    if kind not in PROVIDERS:
        return []
    cost = call.cost
    priced = cost is not None and cost.total is not None
    dimensions: dict[str, Any] = {
        "latency_ms": call.latency_ms,
        "status_code": call.status_code,
        "error_type": call.error_type,
        "status": call.status,
        "provider": call.provider,
        "model": call.model,
        "raw_model": call.raw_model,
        "node_id": call.node_id,
        "call_index": call.index,
        "attempts": call.attempts,
        "finish_reason": call.finish_reason,
        "usage_reported": call.usage is not None,
        "cost_status": "priced" if priced else ("unpriced" if call.usage is not None else "no_usage"),
        "price_version": cost.price_version if cost is not None else None,
        "trace_id": scope.trace_id,
        "span_id": call.span_id,
    }
    common = {
        **_ids(scope),
        "provider": kind,
        "model": call.model[:200],
        "timestamp": at,
        "dimensions": dimensions,
    }
    events = [UsageRecorded(meter="requests", quantity=Decimal(1), cost_usd_estimate=None, **common)]
    if call.usage is None:
        return events
    cost_in: Decimal | None = None
    cost_out: Decimal | None = None
    if cost is not None and cost.total is not None:
        cost_in = sum(
            (cost.breakdown.get(k, Decimal(0)) for k in ("input", "cached_input", "cache_write")), Decimal(0)
        )
        cost_in = _plain(min(cost_in, cost.total))
        cost_out = _plain(cost.total - cost_in)
    events.append(
        UsageRecorded(
            meter="tokens_in", quantity=Decimal(call.tokens_in), cost_usd_estimate=cost_in, **common
        )
    )
    events.append(
        UsageRecorded(
            meter="tokens_out", quantity=Decimal(call.tokens_out), cost_usd_estimate=cost_out, **common
        )
    )
    return events


def compute_usage_event(scope: RunScope, seconds: Decimal, at: datetime, status: str) -> UsageRecorded:
    """The run's `compute_seconds` (wall time from start to end, millisecond precision)."""
    return UsageRecorded(
        meter="compute_seconds",
        quantity=seconds,
        cost_usd_estimate=None,
        provider="internal",
        model=None,
        timestamp=at,
        dimensions={"status": status, "trace_id": scope.trace_id, "latency_ms": int(seconds * 1000)},
        **_ids(scope),
    )
