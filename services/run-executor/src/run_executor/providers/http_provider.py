"""What every HTTP adapter shares: the pooled client, credential lookup, the retry/breaker loop,
status and transport error mapping, and the assembly of streamed answers."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from .base import (
    ErrorCode,
    FinishReason,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    SecretResolver,
    StreamEnd,
    StreamEvent,
    TextDelta,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    UsageUpdate,
    tool_call_from_json,
)
from .resilience import (
    CircuitBreakerRegistry,
    RetryingCaller,
    RetryPolicy,
    code_for_status,
    counts_as_failure,
    parse_retry_after,
)

_MAX_ERROR_BODY = 64 * 1024

log = logging.getLogger("run_executor.providers")


@dataclass(frozen=True, kw_only=True)
class HttpProviderConfig:
    """Settings of one HTTP provider endpoint. `name` is the provider name requests use (default: the
    adapter kind, e.g. "openai"; give an OpenAI-compatible server its own, e.g. "ollama").
    `timeout_s` bounds one attempt of `complete` and, for streams, the wait for the response head
    and then for each following chunk."""

    base_url: str
    name: str | None = None
    secret_ref: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_connections: int = 100
    max_keepalive_connections: int = 20
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_failure_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def scrubber(secrets: tuple[str, ...]) -> Callable[[str], str]:
    """A function removing every credential from a text (provider error bodies may echo a key)."""
    usable = tuple(s for s in secrets if s and len(s) >= 4)

    def scrub(text: str) -> str:
        for secret in usable:
            text = text.replace(secret, "[redacted]")
        return text

    return scrub


async def _read_capped(response: httpx.Response, limit: int = _MAX_ERROR_BODY) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def json_object(body: bytes | str, provider: str) -> dict[str, Any]:
    """Decode a JSON object or raise `provider_bad_response`."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ProviderError(
            ErrorCode.BAD_RESPONSE, f"{provider}: response is not valid JSON", provider=provider
        ) from None
    if not isinstance(data, dict):
        raise ProviderError(
            ErrorCode.BAD_RESPONSE, f"{provider}: response is not a JSON object", provider=provider
        )
    return data


def bad_response(provider: str, what: str) -> ProviderError:
    return ProviderError(ErrorCode.BAD_RESPONSE, f"{provider}: {what}", provider=provider)


def as_int(value: Any) -> int:
    """A token count from a JSON field (absent or null is 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"not a token count: {value!r}")
    return int(value)


@dataclass
class Answer:
    """A decoded non-streamed answer."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    raw_finish_reason: str | None
    finish_reason: FinishReason
    usage: TokenUsage
    raw_model: str | None
    provider_request_id: str | None
    usage_reported: bool = True


class StreamAssembler:
    """Collects the pieces of a stream into the final response while the adapter yields events."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self.usage: TokenUsage | None = None
        self.raw_finish_reason: str | None = None
        self.raw_model: str | None = None
        self.provider_request_id: str | None = None
        self.completed = False
        self.first_token_at: float | None = None

    def _first(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def text(self, delta: str) -> TextDelta:
        self._first()
        self._text.append(delta)
        return TextDelta(delta)

    def tool_delta(self, index: int, call_id: str | None, name: str | None, arguments: str) -> ToolCallDelta:
        self._first()
        call = self._calls.setdefault(index, {"id": None, "name": None, "arguments": []})
        if call_id:
            call["id"] = call_id
        if name:
            call["name"] = name
        call["arguments"].append(arguments)
        return ToolCallDelta(index, call_id, name, arguments)

    def report_usage(self, usage: TokenUsage) -> UsageUpdate:
        self.usage = usage
        return UsageUpdate(usage)

    def response(
        self,
        req: ProviderRequest,
        provider: str,
        attempts: int,
        finish: Callable[[str | None, bool], FinishReason],
    ) -> ProviderResponse:
        calls = tuple(
            tool_call_from_json(c["id"] or f"call_{i}", c["name"] or "", "".join(c["arguments"]))
            for i, c in sorted(self._calls.items())
        )
        now = time.monotonic()
        return ProviderResponse(
            provider=provider,
            model=req.model,
            raw_model=self.raw_model,
            text="".join(self._text),
            tool_calls=calls,
            finish_reason=finish(self.raw_finish_reason, bool(calls)),
            raw_finish_reason=self.raw_finish_reason,
            usage=self.usage or TokenUsage(),
            latency_ms=int((now - self._started) * 1000),
            provider_request_id=self.provider_request_id,
            attempts=attempts,
            time_to_first_token_ms=(
                int((self.first_token_at - self._started) * 1000) if self.first_token_at is not None else None
            ),
            usage_reported=self.usage is not None,
        )


class HttpProvider:
    """Base of the HTTP adapters; subclasses implement the wire format hooks below."""

    kind: ClassVar[str]
    request_id_header: ClassVar[str] = "x-request-id"

    def __init__(
        self,
        config: HttpProviderConfig,
        secrets: SecretResolver,
        *,
        breakers: CircuitBreakerRegistry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.name = config.name or self.kind
        self._secrets = secrets
        self.base_url = config.base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_keepalive_connections,
            ),
            headers=dict(config.extra_headers),
            transport=transport,
            follow_redirects=False,
        )
        self.breaker = (breakers or CircuitBreakerRegistry()).get(
            self.base_url,
            failure_threshold=config.breaker_failure_threshold,
            cooldown_s=config.breaker_cooldown_s,
        )
        self._caller = RetryingCaller(self.name, config.retry, self.breaker, sleep=sleep, rng=rng)

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ hooks of each wire format

    def build_request(
        self, req: ProviderRequest, credential: Any, *, stream: bool, timeout: float
    ) -> httpx.Request:
        raise NotImplementedError

    def parse_answer(self, req: ProviderRequest, data: dict[str, Any], headers: httpx.Headers) -> Answer:
        raise NotImplementedError

    def decode_stream(
        self, req: ProviderRequest, response: httpx.Response, acc: StreamAssembler
    ) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    # The wire format's stop reasons mapped to ours; anything else is `other`.
    FINISH_REASONS: ClassVar[Mapping[str, FinishReason]] = {}

    def finish_reason(self, raw: str | None, has_tool_calls: bool) -> FinishReason:
        if raw is None:
            return "tool_calls" if has_tool_calls else "other"
        return self.FINISH_REASONS.get(raw, "other")

    def post(self, path: str, content: bytes, headers: dict[str, str], timeout: float) -> httpx.Request:
        """A POST on this provider's client with the call's timeout (connect bounded by the config)."""
        return self._client.build_request(
            "POST",
            path,
            content=content,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, self.config.connect_timeout_s)),
        )

    def error_detail(self, body: bytes) -> str:
        """The provider's own error message from an error body (shared default: JSON `error.message`)."""
        try:
            data = json.loads(body)
        except ValueError:
            return body[:300].decode("utf-8", "replace")
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict) and err.get("message"):
                return str(err["message"])[:300]
            if data.get("message"):
                return str(data["message"])[:300]
        return body[:300].decode("utf-8", "replace")

    async def credential(self, req: ProviderRequest) -> Any:
        """The resolved secret (None when no secret_ref is configured, e.g. a local Ollama)."""
        return await self._resolve_secret(req)

    def credential_secrets(self, credential: Any) -> tuple[str, ...]:
        return (credential,) if isinstance(credential, str) else ()

    # ------------------------------------------------------------------ shared machinery

    async def _resolve_secret(self, req: ProviderRequest) -> str | None:
        ref = req.secret_ref or self.config.secret_ref
        if ref is None:
            return None
        try:
            return await self._secrets.resolve(req.tenant_id, ref)
        except Exception:  # noqa: BLE001 - whatever the store raised, its text may hold secrets
            raise ProviderError(
                ErrorCode.AUTH_FAILED,
                f"{self.name}: no credential for secret_ref {ref!r}",
                provider=self.name,
            ) from None

    def _timeout(self, req: ProviderRequest) -> float:
        return req.timeout_s or self.config.timeout_s

    def _transport_error(self, exc: Exception, scrub: Callable[[str], str], timeout: float) -> ProviderError:
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            return ProviderError(
                ErrorCode.TIMEOUT, f"{self.name}: no answer within {timeout:g}s", provider=self.name
            )
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
            return ProviderError(
                ErrorCode.BAD_REQUEST, scrub(f"{self.name}: {type(exc).__name__}: {exc}"), provider=self.name
            )
        return ProviderError(
            ErrorCode.UNAVAILABLE, scrub(f"{self.name}: {type(exc).__name__}: {exc}"), provider=self.name
        )

    async def _check_status(self, response: httpx.Response, scrub: Callable[[str], str]) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        body = await _read_capped(response)
        detail = scrub(self.error_detail(body))
        code = code_for_status(status) if status >= 400 else ErrorCode.BAD_RESPONSE
        raise ProviderError(
            code,
            f"{self.name}: HTTP {status}: {detail}",
            status=status,
            provider=self.name,
            retry_after_s=parse_retry_after(response.headers),
            provider_request_id=response.headers.get(self.request_id_header),
        )

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        req.validate()
        started = time.monotonic()
        credential = await self.credential(req)
        scrub = scrubber(self.credential_secrets(credential))
        timeout = self._timeout(req)

        async def attempt() -> Answer:
            try:
                async with asyncio.timeout(timeout):
                    request = self.build_request(req, credential, stream=False, timeout=timeout)
                    response = await self._client.send(request, stream=True)
                    try:
                        await self._check_status(response, scrub)
                        body = await response.aread()
                    finally:
                        await response.aclose()
            except (TimeoutError, httpx.TransportError) as exc:
                raise self._transport_error(exc, scrub, timeout) from exc
            data = json_object(body, self.name)
            try:
                return self.parse_answer(req, data, response.headers)
            except ProviderError:
                raise
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                raise bad_response(self.name, f"unexpected response shape ({type(exc).__name__})") from None

        answer, attempts = await self._caller.call(attempt)
        if not answer.usage_reported:
            self._warn_no_usage(req)
        return ProviderResponse(
            provider=self.name,
            model=req.model,
            raw_model=answer.raw_model,
            text=answer.text,
            tool_calls=answer.tool_calls,
            finish_reason=answer.finish_reason,
            raw_finish_reason=answer.raw_finish_reason,
            usage=answer.usage,
            latency_ms=int((time.monotonic() - started) * 1000),
            provider_request_id=answer.provider_request_id,
            attempts=attempts,
            usage_reported=answer.usage_reported,
        )

    async def stream(self, req: ProviderRequest) -> AsyncIterator[StreamEvent]:
        req.validate()
        started = time.monotonic()
        credential = await self.credential(req)
        scrub = scrubber(self.credential_secrets(credential))
        timeout = self._timeout(req)

        async def attempt() -> httpx.Response:
            try:
                async with asyncio.timeout(timeout):
                    request = self.build_request(req, credential, stream=True, timeout=timeout)
                    response = await self._client.send(request, stream=True)
                    try:
                        await self._check_status(response, scrub)
                    except BaseException:
                        await response.aclose()
                        raise
                    return response
            except (TimeoutError, httpx.TransportError) as exc:
                raise self._transport_error(exc, scrub, timeout) from exc

        response, attempts = await self._caller.call(attempt)
        acc = StreamAssembler(started)
        acc.provider_request_id = response.headers.get(self.request_id_header)
        try:
            async for event in self.decode_stream(req, response, acc):
                yield event
            if not acc.completed:
                raise bad_response(self.name, "stream ended before its final event (truncated)")
        except ProviderError as err:
            if err.usage_so_far is None:
                err.usage_so_far = acc.usage
            err.provider = err.provider or self.name
            if counts_as_failure(err):
                self.breaker.record_failure()
            raise
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            err = self._transport_error(exc, scrub, timeout)
            if err.code == ErrorCode.TIMEOUT:
                err.message = f"{self.name}: stream stalled for more than {timeout:g}s"
            else:
                err.message = f"{err.message} (stream broken mid-way)"
            err.usage_so_far = acc.usage
            raise err from exc
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            self.breaker.record_failure()
            err = bad_response(self.name, f"unexpected stream event shape ({type(exc).__name__})")
            err.usage_so_far = acc.usage
            raise err from None
        finally:
            await response.aclose()
        if acc.usage is None:
            self._warn_no_usage(req)
        yield StreamEnd(acc.response(req, self.name, attempts, self.finish_reason))

    def _warn_no_usage(self, req: ProviderRequest) -> None:
        log.warning(
            "provider answered without usage; tokens unknown",
            extra={"fields": {"provider": self.name, "model": req.model, "tenant": req.tenant_id}},
        )
