"""Resilience shared by every adapter: error classification, retries with full-jitter exponential
backoff honouring `Retry-After`, a circuit breaker per base URL, and cooperative cancellation.

Cancellation rule: `asyncio.CancelledError` is never caught-and-converted; it propagates at once and
the adapters close the in-flight HTTP request on the way out. `provider_cancelled` is raised only by
`complete_until` / `stream_until` below, when a *run* is cancelled through an `asyncio.Event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, TypeVar

from .base import ErrorCode, ProviderError, StreamEnd, StreamEvent, TokenUsage, UsageUpdate

log = logging.getLogger("run_executor.providers")

T = TypeVar("T")

# ----------------------------------------------------------------------------- classification


def code_for_status(status: int) -> ErrorCode:
    """The stable error code of an HTTP error status."""
    if status == 429:
        return ErrorCode.RATE_LIMITED
    if status in (401, 403):
        return ErrorCode.AUTH_FAILED
    if status == 408:
        return ErrorCode.TIMEOUT
    if status >= 500:  # includes Anthropic's 529 "overloaded"
        return ErrorCode.UNAVAILABLE
    return ErrorCode.BAD_REQUEST  # 400, 404, 409, 413, 422 ...


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to the response headers, or None.

    Reads `retry-after-ms` (OpenAI's millisecond hint) first, then `Retry-After` as delta-seconds or
    an HTTP date (RFC 9110 §10.2.3). Past dates give 0; unparsable values give None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000.0
    raw = lowered.get("retry-after")
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


# ----------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first try. A retry waits `Retry-After` when the provider sent one
    (capped at `max_retry_after_s`), else a full-jitter exponential backoff:
    uniform(0, min(max_delay_s, base_delay_s * 2 ** (attempt - 1)))."""

    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504, 529})
    retry_on_timeout: bool = False  # a timed-out LLM call is usually slow, not lost: do not double the wait

    def should_retry(self, err: ProviderError, attempt: int) -> bool:
        if attempt >= self.max_attempts:
            return False
        if err.code == ErrorCode.TIMEOUT:
            return self.retry_on_timeout
        if err.status is not None:
            return err.status in self.retry_statuses
        return err.code == ErrorCode.UNAVAILABLE  # connection refused/reset before any answer

    def backoff_delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return rng() * ceiling

    def delay(
        self, attempt: int, retry_after_s: float | None, rng: Callable[[], float] = random.random
    ) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.max_retry_after_s)
        return self.backoff_delay(attempt, rng)


# ----------------------------------------------------------------------------- circuit breaker


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def counts_as_failure(err: ProviderError) -> bool:
    """Whether an error says the endpoint is unhealthy. 4xx answers (rate limits and bad keys too)
    concern one request or one tenant's key, not the shared endpoint, so they do not trip it."""
    return err.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.BAD_RESPONSE)


@dataclass
class CircuitBreaker:
    """closed --(failure_threshold consecutive failures)--> open --(cooldown_s)--> half_open, where
    one probe call is let through: success closes, failure re-opens (and restarts the cooldown)."""

    key: str
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    _probe_in_flight: bool = field(default=False, repr=False)

    def acquire(self, provider: str | None = None) -> None:
        """Permission to call; raises `provider_circuit_open` while open (or while a probe runs)."""
        if self.state == BreakerState.OPEN:
            assert self.opened_at is not None
            remaining = self.opened_at + self.cooldown_s - self.clock()
            if remaining > 0:
                raise ProviderError(
                    ErrorCode.CIRCUIT_OPEN,
                    f"circuit open for {self.key} after {self.consecutive_failures} consecutive failures; "
                    f"next probe in {remaining:.1f}s",
                    provider=provider,
                    retry_after_s=remaining,
                )
            self.state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        if self.state == BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                raise ProviderError(
                    ErrorCode.CIRCUIT_OPEN,
                    f"circuit half-open for {self.key}; a probe is in flight",
                    provider=provider,
                )
            self._probe_in_flight = True

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        self._probe_in_flight = False
        if self.state == BreakerState.HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
            if self.state != BreakerState.OPEN:
                log.warning(
                    "circuit opened",
                    extra={
                        "fields": {"breaker": self.key, "consecutive_failures": self.consecutive_failures}
                    },
                )
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()

    def record(self, err: ProviderError) -> None:
        if counts_as_failure(err):
            self.record_failure()
        else:
            self.record_success()

    def release(self) -> None:
        """The call ended without a verdict (cancelled): let another caller probe."""
        self._probe_in_flight = False


class CircuitBreakerRegistry:
    """One breaker per key (the adapters use their base URL); share one registry per process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str, *, failure_threshold: int = 5, cooldown_s: float = 30.0) -> CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(key, failure_threshold, cooldown_s, self._clock)
            self._breakers[key] = breaker
        return breaker

    def states(self) -> dict[str, str]:
        return {key: b.state.value for key, b in self._breakers.items()}


# ----------------------------------------------------------------------------- the call loop


class RetryingCaller:
    """Runs one attempt function under the breaker, retrying as the policy allows."""

    def __init__(
        self,
        provider: str,
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self.breaker = breaker
        self._sleep = sleep
        self._rng = rng

    async def call(self, attempt_fn: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """(result, attempts used). Raises the last ProviderError when retries are exhausted, or when
        the circuit opened under the retries (the real cause is more useful than "circuit open")."""
        attempt = 0
        last: ProviderError | None = None
        while True:
            attempt += 1
            try:
                self.breaker.acquire(self.provider)
            except ProviderError:
                if last is None:
                    raise
                last.message = f"{last.message} (circuit now open; no further retries)"
                raise last from None
            try:
                result = await attempt_fn()
            except ProviderError as err:
                self.breaker.record(err)
                if not self.policy.should_retry(err, attempt):
                    raise
                last = err
                delay = self.policy.delay(attempt, err.retry_after_s, self._rng)
                log.warning(
                    "provider call failed; retrying",
                    extra={
                        "fields": {
                            "provider": self.provider,
                            "code": err.code.value,
                            "status": err.status,
                            "attempt": attempt,
                            "delay_s": round(delay, 3),
                        }
                    },
                )
                await self._sleep(delay)
                continue
            except BaseException:  # cancelled, or a programming error: no verdict on the endpoint
                self.breaker.release()
                raise
            self.breaker.record_success()
            return result, attempt


# ----------------------------------------------------------------------------- run cancellation


async def _next_event(events: AsyncIterator[StreamEvent]) -> StreamEvent | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


def _last_usage(event: StreamEvent, current: TokenUsage | None) -> TokenUsage | None:
    if isinstance(event, UsageUpdate):
        return event.usage
    if isinstance(event, StreamEnd):
        return event.usage
    return current


async def complete_until(call: Awaitable[T], cancel: asyncio.Event, *, provider: str | None = None) -> T:
    """Await `call`, but abandon it (closing its HTTP request) as soon as `cancel` is set, raising
    `provider_cancelled`. Use it to stop a provider call when its run is cancelled."""
    task = asyncio.ensure_future(call)
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if task.cancelled():
        raise ProviderError(ErrorCode.CANCELLED, "provider call cancelled with its run", provider=provider)
    return task.result()


async def stream_until(
    events: AsyncIterator[StreamEvent], cancel: asyncio.Event, *, provider: str | None = None
) -> AsyncIterator[StreamEvent]:
    """Relay `events` until `cancel` is set; then close the stream (and its HTTP request) and raise
    `provider_cancelled` carrying the last usage the provider reported (`usage_so_far`)."""
    usage: TokenUsage | None = None
    pending: asyncio.Future[StreamEvent | None] | None = None
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        while True:
            pending = asyncio.ensure_future(_next_event(events))
            await asyncio.wait({pending, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not pending.done():
                break
            try:
                event = pending.result()
            except ProviderError as err:
                pending = None
                if err.usage_so_far is None and usage is not None:
                    err.usage_so_far = usage
                raise
            pending = None
            if event is None:
                return
            usage = _last_usage(event, usage)
            yield event
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        pending = None
        raise ProviderError(
            ErrorCode.CANCELLED,
            "provider stream cancelled with its run",
            provider=provider,
            usage_so_far=usage,
        )
    finally:
        waiter.cancel()
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
