"""Retry-After parsing, full-jitter backoff, retry decisions, the circuit breaker state machine (on a
fake clock), the retry loop (on a fake sleep) and run cancellation helpers."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from run_executor.providers import (
    LocalProvider,
    LocalProviderConfig,
    ProviderRequest,
    StreamEnd,
    TextDelta,
    UsageUpdate,
)
from run_executor.providers.base import ErrorCode, ProviderError, TokenUsage
from run_executor.providers.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakerRegistry,
    RetryingCaller,
    RetryPolicy,
    code_for_status,
    complete_until,
    parse_retry_after,
    stream_until,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 7, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# ----------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": " 7 "}, 7.0),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),  # OpenAI's finer hint wins
        ({"Retry-After": format_datetime(NOW + timedelta(seconds=42), usegmt=True)}, 42.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past: go now
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-5"}, None),
        ({"retry-after-ms": "x"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    assert [policy.backoff_delay(n, lambda: 1.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.backoff_delay(3, lambda: 0.0) == 0.0
    assert policy.backoff_delay(2, lambda: 0.25) == 0.25


def test_retry_after_wins_over_backoff_but_is_capped() -> None:
    policy = RetryPolicy(max_retry_after_s=10.0)
    assert policy.delay(1, 3.0, lambda: 1.0) == 3.0
    assert policy.delay(1, 120.0, lambda: 1.0) == 10.0
    assert policy.delay(1, None, lambda: 1.0) == 0.5


@pytest.mark.parametrize(
    ("err", "attempt", "retry"),
    [
        (ProviderError(ErrorCode.RATE_LIMITED, "x", status=429), 1, True),
        (ProviderError(ErrorCode.UNAVAILABLE, "x", status=500), 1, True),
        (ProviderError(ErrorCode.UNAVAILABLE, "x", status=503), 2, True),
        (ProviderError(ErrorCode.UNAVAILABLE, "x", status=529), 1, True),
        (ProviderError(ErrorCode.UNAVAILABLE, "x", status=501), 1, False),
        (ProviderError(ErrorCode.UNAVAILABLE, "connection refused"), 1, True),
        (ProviderError(ErrorCode.UNAVAILABLE, "x", status=500), 3, False),  # attempts used up
        (ProviderError(ErrorCode.AUTH_FAILED, "x", status=401), 1, False),
        (ProviderError(ErrorCode.BAD_REQUEST, "x", status=400), 1, False),
        (ProviderError(ErrorCode.BAD_RESPONSE, "x"), 1, False),
        (ProviderError(ErrorCode.TIMEOUT, "x"), 1, False),
    ],
)
def test_should_retry(err: ProviderError, attempt: int, retry: bool) -> None:
    assert RetryPolicy(max_attempts=3).should_retry(err, attempt) is retry


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "provider_bad_request"),
        (404, "provider_bad_request"),
        (422, "provider_bad_request"),
        (401, "provider_auth_failed"),
        (403, "provider_auth_failed"),
        (408, "provider_timeout"),
        (429, "provider_rate_limited"),
        (500, "provider_unavailable"),
        (502, "provider_unavailable"),
        (503, "provider_unavailable"),
        (504, "provider_unavailable"),
        (529, "provider_unavailable"),
    ],
)
def test_status_codes_map_to_stable_error_codes(status: int, code: str) -> None:
    assert code_for_status(status) == code


def test_error_retryable_defaults_follow_the_code() -> None:
    assert ProviderError("provider_rate_limited", "x").retryable
    assert ProviderError("provider_circuit_open", "x").retryable
    assert not ProviderError("provider_bad_request", "x").retryable
    assert not ProviderError("provider_cancelled", "x").retryable
    assert ProviderError("provider_bad_request", "x", retryable=True).retryable
    with pytest.raises(ValueError):
        ProviderError("no_such_code", "x")


def test_error_as_dict_carries_usage_so_far() -> None:
    err = ProviderError(
        "provider_unavailable",
        "broken",
        status=502,
        provider="anthropic",
        usage_so_far=TokenUsage(10, 2, 100),
    )
    data = err.as_dict()
    assert data["code"] == "provider_unavailable" and data["status"] == 502 and data["retryable"] is True
    assert data["usage_so_far"]["total_input_tokens"] == 110 and data["usage_so_far"]["output_tokens"] == 2
    assert str(err) == "provider_unavailable: broken"
    assert ProviderError("provider_timeout", "slow").as_dict()["usage_so_far"] is None


# ----------------------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_n_consecutive_failures_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("http://p", failure_threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        breaker.acquire()
        breaker.record_failure()
    assert breaker.state == BreakerState.CLOSED
    breaker.acquire()
    breaker.record_failure()
    assert breaker.state == BreakerState.OPEN

    with pytest.raises(ProviderError) as info:
        breaker.acquire("openai")
    assert info.value.code == ErrorCode.CIRCUIT_OPEN and info.value.retry_after_s == pytest.approx(10)

    clock.advance(9.9)
    with pytest.raises(ProviderError):
        breaker.acquire()
    clock.advance(0.2)
    breaker.acquire()  # the one probe
    assert breaker.state == BreakerState.HALF_OPEN
    with pytest.raises(ProviderError) as info:
        breaker.acquire()  # a second caller while the probe runs
    assert info.value.code == ErrorCode.CIRCUIT_OPEN
    breaker.record_success()
    assert breaker.state == BreakerState.CLOSED and breaker.consecutive_failures == 0
    breaker.acquire()


def test_failed_probe_reopens_and_restarts_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("k", failure_threshold=1, cooldown_s=5, clock=clock)
    breaker.acquire()
    breaker.record_failure()
    clock.advance(5)
    breaker.acquire()
    breaker.record_failure()
    assert breaker.state == BreakerState.OPEN
    clock.advance(4)
    with pytest.raises(ProviderError):
        breaker.acquire()
    clock.advance(1)
    breaker.acquire()
    assert breaker.state == BreakerState.HALF_OPEN


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker("k", failure_threshold=2, cooldown_s=5, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == BreakerState.CLOSED


def test_client_side_errors_do_not_trip_the_breaker() -> None:
    breaker = CircuitBreaker("k", failure_threshold=1, cooldown_s=5, clock=FakeClock())
    for code in ("provider_rate_limited", "provider_auth_failed", "provider_bad_request"):
        breaker.record(ProviderError(code, "x"))
    assert breaker.state == BreakerState.CLOSED
    breaker.record(ProviderError("provider_bad_response", "x"))
    assert breaker.state == BreakerState.OPEN


def test_a_cancelled_probe_lets_the_next_caller_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("k", failure_threshold=1, cooldown_s=1, clock=clock)
    breaker.record_failure()
    clock.advance(1)
    breaker.acquire()
    breaker.release()
    breaker.acquire()
    assert breaker.state == BreakerState.HALF_OPEN


def test_registry_shares_one_breaker_per_key() -> None:
    registry = CircuitBreakerRegistry(FakeClock())
    assert registry.get("http://a") is registry.get("http://a")
    assert registry.get("http://a") is not registry.get("http://b")
    registry.get("http://a").record_failure()
    assert registry.states() == {"http://a": "closed", "http://b": "closed"}


# ----------------------------------------------------------------------------- the retry loop


class Script:
    """An attempt function failing with the given errors, then returning "ok"."""

    def __init__(self, *errors: ProviderError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _caller(policy: RetryPolicy, breaker: CircuitBreaker | None = None) -> tuple[RetryingCaller, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    breaker = breaker or CircuitBreaker("k", failure_threshold=99, cooldown_s=1, clock=FakeClock())
    return RetryingCaller("p", policy, breaker, sleep=sleep, rng=lambda: 0.5), slept


async def test_retries_honour_retry_after_then_back_off() -> None:
    caller, slept = _caller(RetryPolicy(max_attempts=4, base_delay_s=1.0))
    script = Script(
        ProviderError("provider_rate_limited", "slow down", status=429, retry_after_s=2.0),
        ProviderError("provider_unavailable", "boom", status=502),
    )
    assert await caller.call(script) == ("ok", 3)
    assert slept == [2.0, 1.0]  # Retry-After, then rng 0.5 * 1.0 * 2**1


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    caller, slept = _caller(RetryPolicy(max_attempts=2, base_delay_s=0.1))
    script = Script(*(ProviderError("provider_unavailable", f"n{i}", status=503) for i in range(5)))
    with pytest.raises(ProviderError) as info:
        await caller.call(script)
    assert info.value.message == "n1" and script.calls == 2 and len(slept) == 1


async def test_non_retryable_errors_fail_at_once() -> None:
    caller, slept = _caller(RetryPolicy(max_attempts=5))
    script = Script(ProviderError("provider_auth_failed", "bad key", status=401))
    with pytest.raises(ProviderError):
        await caller.call(script)
    assert script.calls == 1 and slept == []


async def test_retry_loop_stops_when_the_circuit_opens() -> None:
    breaker = CircuitBreaker("k", failure_threshold=2, cooldown_s=60, clock=FakeClock())
    caller, _ = _caller(RetryPolicy(max_attempts=5, base_delay_s=0), breaker)
    script = Script(*(ProviderError("provider_unavailable", "down", status=500) for _ in range(5)))
    with pytest.raises(ProviderError) as info:
        await caller.call(script)
    assert info.value.code == ErrorCode.UNAVAILABLE and script.calls == 2
    assert info.value.message == "down (circuit now open; no further retries)"
    with pytest.raises(ProviderError) as info:
        await caller.call(script)  # the next call does not reach the provider
    assert info.value.code == ErrorCode.CIRCUIT_OPEN and script.calls == 2


async def test_cancellation_propagates_and_releases_the_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("k", failure_threshold=1, cooldown_s=1, clock=clock)
    breaker.record_failure()
    clock.advance(1)
    caller, _ = _caller(RetryPolicy(), breaker)

    async def hang() -> str:
        await asyncio.sleep(60)
        return "never"

    task = asyncio.ensure_future(caller.call(hang))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    breaker.acquire()  # the probe slot was given back


# ----------------------------------------------------------------------------- run cancellation


def _req(**metadata: float) -> ProviderRequest:
    return ProviderRequest(
        provider="local",
        model="local-echo",
        messages=[{"role": "user", "content": "one two three four five six"}],
        metadata=metadata,
    )


async def test_complete_until_raises_provider_cancelled_when_the_run_is_cancelled() -> None:
    provider = LocalProvider(LocalProviderConfig(latency_s=30))
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, cancel.set)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProviderError) as info:
        await complete_until(provider.complete(_req()), cancel, provider="local")
    assert info.value.code == ErrorCode.CANCELLED
    assert asyncio.get_running_loop().time() - started < 1


async def test_complete_until_returns_the_answer_when_not_cancelled() -> None:
    response = await complete_until(LocalProvider().complete(_req()), asyncio.Event())
    assert response.text == "echo: one two three four five six"


async def test_stream_until_stops_the_stream_and_reports_usage_so_far() -> None:
    provider = LocalProvider(LocalProviderConfig(chunk_delay_s=0.2))
    cancel = asyncio.Event()
    seen = []
    with pytest.raises(ProviderError) as info:
        async with contextlib.aclosing(stream_until(provider.stream(_req()), cancel)) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, TextDelta):
                    cancel.set()
    assert info.value.code == ErrorCode.CANCELLED
    assert info.value.usage_so_far == TokenUsage(input_tokens=6)  # the prompt was already processed
    assert isinstance(seen[0], UsageUpdate) and not any(isinstance(e, StreamEnd) for e in seen)


async def test_stream_until_relays_a_whole_stream() -> None:
    events = [e async for e in stream_until(LocalProvider().stream(_req()), asyncio.Event())]
    assert isinstance(events[-1], StreamEnd)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: one two three four five six"
