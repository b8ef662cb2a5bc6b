"""Usage events of provider calls and runs: exactly the `usage.UsageRecorded` v1 contract, exact
token counts, the cost split over the token events, unknown models never priced at 0."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from run_executor.application.usage import call_usage_events, compute_usage_event, usage_stream
from run_executor.engine.engine import ProviderCall, RunScope
from run_executor.pricing import estimate_cost
from run_executor.providers import TokenUsage

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SCOPE = RunScope(
    tenant_id="acme",
    user_id="usr_1",
    run_id="run_1",
    trace_id="a" * 32,
    agent_id="agt_1",
    project_id="prj_1",
    request_id="req_1",
)


def call(
    provider: str, model: str, usage: TokenUsage | None, status: str = "ok", **kw: object
) -> ProviderCall:
    cost = estimate_cost(provider, model, usage) if usage is not None else None
    fields: dict[str, object] = {
        "index": 1,
        "node_id": "draft",
        "provider": provider,
        "model": model,
        "raw_model": model,
        "usage": usage,
        "status": status,
        "status_code": 200,
        "error_type": None,
        "error_message": None,
        "latency_ms": 120,
        "attempts": 1,
        "finish_reason": "stop",
        "cost": cost,
        "started_at": NOW,
        "span_id": "b" * 16,
    }
    fields.update(kw)
    return ProviderCall(**fields)  # type: ignore[arg-type]


def test_a_call_yields_requests_tokens_in_and_tokens_out_with_the_cost_split() -> None:
    usage = TokenUsage(
        input_tokens=1000, output_tokens=200, cached_input_tokens=400, cached_included_in_input=True
    )
    events = call_usage_events(SCOPE, call("openai", "gpt-4o-mini", usage), NOW)
    by = {e.meter: e for e in events}
    assert [e.meter for e in events] == ["requests", "tokens_in", "tokens_out"]
    assert (by["requests"].quantity, by["tokens_in"].quantity, by["tokens_out"].quantity) == (1, 1000, 200)
    # 600 fresh x 0.15 + 400 cached x 0.075 (per 1M) in; 200 x 0.60 out
    assert by["tokens_in"].cost_usd_estimate == Decimal("0.00012")
    assert by["tokens_out"].cost_usd_estimate == Decimal("0.00012")
    assert by["requests"].cost_usd_estimate is None
    total = estimate_cost("openai", "gpt-4o-mini", usage).total
    assert by["tokens_in"].cost_usd_estimate + by["tokens_out"].cost_usd_estimate == total
    event = by["tokens_in"]
    assert (event.tenant_id, event.user_id, event.project_id, event.agent_id, event.run_id) == (
        "acme",
        "usr_1",
        "prj_1",
        "agt_1",
        "run_1",
    )
    assert event.provider == "openai" and event.model == "gpt-4o-mini" and event.request_id == "req_1"
    dims = event.dimensions
    assert dims["latency_ms"] == 120 and dims["status_code"] == 200 and dims["error_type"] is None
    assert dims["provider"] == "openai" and dims["model"] == "gpt-4o-mini" and dims["cost_status"] == "priced"
    wire = event.model_dump(mode="json")
    assert wire["quantity"] == "1000" and wire["cost_usd_estimate"] == "0.00012"


def test_anthropic_cache_tokens_count_in_tokens_in() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=5, cached_input_tokens=100, cache_write_input_tokens=20)
    by = {e.meter: e for e in call_usage_events(SCOPE, call("anthropic", "claude-3-5-haiku", usage), NOW)}
    assert by["tokens_in"].quantity == 130 and by["tokens_out"].quantity == 5


def test_unknown_model_has_null_cost_never_zero() -> None:
    usage = TokenUsage(input_tokens=3, output_tokens=2)
    by = {e.meter: e for e in call_usage_events(SCOPE, call("openai", "mystery-1", usage), NOW)}
    assert by["tokens_in"].cost_usd_estimate is None and by["tokens_out"].cost_usd_estimate is None
    assert by["tokens_in"].dimensions["cost_status"] == "unpriced"
    assert by["tokens_in"].quantity == 3


def test_failed_call_with_spent_tokens_is_metered_and_one_without_usage_only_counts_the_request() -> None:
    spent = TokenUsage(input_tokens=12)
    failed = call(
        "local", "local-echo", spent, "cancelled", status_code=None, error_type="provider_cancelled"
    )
    by = {e.meter: e for e in call_usage_events(SCOPE, failed, NOW)}
    assert by["tokens_in"].quantity == 12 and by["tokens_out"].quantity == 0
    assert by["requests"].dimensions["error_type"] == "provider_cancelled"
    assert by["requests"].dimensions["status_code"] is None
    nothing = call("openai", "gpt-4o", None, "error", status_code=503, error_type="provider_unavailable")
    events = call_usage_events(SCOPE, nothing, NOW)
    assert [e.meter for e in events] == ["requests"]
    assert events[0].dimensions["usage_reported"] is False and events[0].dimensions["status_code"] == 503


def test_calls_to_unconfigured_providers_are_not_metered() -> None:
    assert call_usage_events(SCOPE, call("nope", "m", None, "error"), NOW) == []


def test_compute_seconds_is_an_internal_decimal_meter() -> None:
    event = compute_usage_event(SCOPE, Decimal("1.234"), NOW, "succeeded")
    assert event.meter == "compute_seconds" and event.provider == "internal"
    assert event.model_dump(mode="json")["quantity"] == "1.234"
    assert event.dimensions["latency_ms"] == 1234
    assert usage_stream("acme", "run_1", 3) == "usage:acme:run_1:3"
