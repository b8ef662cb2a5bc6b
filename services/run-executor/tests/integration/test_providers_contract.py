"""The behaviour every HTTP adapter owes the executor, checked for OpenAI, Anthropic and Bedrock each
against its fake server (real HTTP on 127.0.0.1 speaking that provider's wire format): answers
with exact usage, tools, streaming, retries (Retry-After, 5xx), malformed answers, timeouts,
cancellation closing the connection, the circuit breaker, usage kept when a stream breaks, and
credentials never leaking into errors or logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from run_executor.providers import (
    AnthropicConfig,
    AnthropicProvider,
    BedrockConfig,
    BedrockProvider,
    CircuitBreakerRegistry,
    OpenAIConfig,
    OpenAIProvider,
    ProviderError,
    ProviderRequest,
    RetryPolicy,
    StaticSecretResolver,
    StreamEnd,
    TextDelta,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    UsageUpdate,
)
from run_executor.providers.http_provider import HttpProvider

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # makes services/run-executor/tests/fakes importable
from fakes import provider_anthropic as fa  # noqa: E402
from fakes import provider_bedrock as fb  # noqa: E402
from fakes import provider_openai as fo  # noqa: E402
from fakes.provider_http import FakeServer, Recorded, Reply  # noqa: E402

pytestmark = pytest.mark.integration

API_KEY = "sk-test-SUPERSECRET-0123456789abcdef"
AWS_KEY_ID = "AKIDFAKEEXAMPLE01"
AWS_SECRET = "SUPERSECRETawsKEY/0123456789abcdefghij"
AWS_TOKEN = "SUPERSECRETsessionTOKEN0123456789"
AWS_CREDENTIAL = json.dumps(
    {"access_key_id": AWS_KEY_ID, "secret_access_key": AWS_SECRET, "session_token": AWS_TOKEN}
)
SECRETS = StaticSecretResolver({"openai": API_KEY, "anthropic": API_KEY, "bedrock": AWS_CREDENTIAL})
ALL_SECRETS = (API_KEY, AWS_SECRET, AWS_TOKEN, AWS_CREDENTIAL)
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ARG_PIECES = ['{"ci', 'ty": "Pa', 'ris"}']


@dataclass
class Kit:
    """What the shared tests need to know about one provider's wire format and fake."""

    name: str
    model: str
    usage: TokenUsage  # what the adapter must decode from the fake's usage block
    new_server: Callable[[], FakeServer]
    new_provider: Callable[..., HttpProvider]
    ok: Callable[[str], Reply]
    tool: Callable[[], Reply]
    stream_chunks: Callable[[list[str]], list[bytes]]
    stream_tool_chunks: Callable[[], list[bytes]]
    stream_reply: Callable[..., Reply]
    chunks_through_usage: Callable[[list[bytes]], int] | None  # how many chunks carry all usage, if not last
    error: Callable[..., Reply]
    tool_names_sent: Callable[[dict[str, Any]], list[str]]
    authenticated: Callable[[Recorded], bool]
    credential_echo: Callable[[Recorded], str]  # what a careless provider would echo in a 401


def _config_kwargs(server: FakeServer, cfg: dict[str, Any]) -> dict[str, Any]:
    return {"base_url": server.base_url, "retry": FAST_RETRY, **cfg}


OPENAI = Kit(
    name="openai",
    model="gpt-4o-mini",
    usage=TokenUsage(57, 17, 32, 8, cached_included_in_input=True),
    new_server=lambda: FakeServer(fo.echo),
    new_provider=lambda server, **cfg: OpenAIProvider(
        OpenAIConfig(secret_ref="openai", **_config_kwargs(server, cfg)),
        SECRETS,
        breakers=CircuitBreakerRegistry(),
    ),
    ok=lambda text: Reply.json(
        fo.completion(text, usage_block=fo.usage(57, 17, cached=32, reasoning=8)),
        headers={"x-request-id": "req_ok"},
    ),
    tool=lambda: Reply.json(fo.completion(None, tool_calls=[("call_1", "get_weather", {"city": "Paris"})])),
    stream_chunks=lambda parts: fo.stream_chunks(parts, usage_block=fo.usage(57, 17, cached=32, reasoning=8)),
    stream_tool_chunks=lambda: fo.stream_chunks([], tool_calls=[("call_1", "get_weather", ARG_PIECES)]),
    stream_reply=fo.stream_reply,
    chunks_through_usage=lambda chunks: len(chunks) - 1,  # all but `data: [DONE]`
    error=fo.error,
    tool_names_sent=lambda body: [t["function"]["name"] for t in body["tools"]],
    authenticated=lambda r: r.headers.get("authorization") == f"Bearer {API_KEY}",
    credential_echo=lambda r: f"Incorrect API key provided: {r.headers.get('authorization', '')}",
)

ANTHROPIC = Kit(
    name="anthropic",
    model="claude-sonnet-4-20250514",
    usage=TokenUsage(21, 12, 100, 0, 50),
    new_server=lambda: FakeServer(fa.echo),
    new_provider=lambda server, **cfg: AnthropicProvider(
        AnthropicConfig(secret_ref="anthropic", **_config_kwargs(server, cfg)),
        SECRETS,
        breakers=CircuitBreakerRegistry(),
    ),
    ok=lambda text: Reply.json(
        fa.message(text, usage_block=fa.usage(21, 12, cache_read=100, cache_creation=50)),
        headers={"request-id": "req_ok"},
    ),
    tool=lambda: Reply.json(
        fa.message("Let me check.", tool_uses=[("call_1", "get_weather", {"city": "Paris"})])
    ),
    stream_chunks=lambda parts: fa.stream_events(
        parts, usage_block=fa.usage(21, 12, cache_read=100, cache_creation=50)
    ),
    stream_tool_chunks=lambda: fa.stream_events([], tool_uses=[("call_1", "get_weather", ARG_PIECES)]),
    stream_reply=fa.stream_reply,
    chunks_through_usage=lambda chunks: len(chunks) - 1,  # all but message_stop
    error=fa.error,
    tool_names_sent=lambda body: [t["name"] for t in body["tools"]],
    authenticated=lambda r: (
        r.headers.get("x-api-key") == API_KEY and r.headers.get("anthropic-version") == "2023-06-01"
    ),
    credential_echo=lambda r: f"invalid x-api-key {r.headers.get('x-api-key', '')}",
)

BEDROCK = Kit(
    name="bedrock",
    model="anthropic.claude-3-5-sonnet-20240620-v1:0",
    usage=TokenUsage(30, 9, 12, 0, 4),
    new_server=lambda: FakeServer(
        fb.echo,
        check=fb.SigV4Verifier(
            {AWS_KEY_ID: AWS_SECRET}, region="us-east-1", session_tokens={AWS_KEY_ID: AWS_TOKEN}
        ),
    ),
    new_provider=lambda server, **cfg: BedrockProvider(
        BedrockConfig(secret_ref="bedrock", region="us-east-1", **_config_kwargs(server, cfg)),
        SECRETS,
        breakers=CircuitBreakerRegistry(),
    ),
    ok=lambda text: fb.ok(fb.converse(text, usage_block=fb.usage(30, 9, cache_read=12, cache_write=4))),
    tool=lambda: fb.ok(
        fb.converse("Let me check.", tool_uses=[("call_1", "get_weather", {"city": "Paris"})])
    ),
    stream_chunks=lambda parts: fb.stream_frames(
        parts, usage_block=fb.usage(30, 9, cache_read=12, cache_write=4)
    ),
    stream_tool_chunks=lambda: fb.stream_frames([], tool_uses=[("call_1", "get_weather", ARG_PIECES)]),
    stream_reply=fb.stream_reply,
    chunks_through_usage=None,  # ConverseStream reports usage in its very last event
    error=fb.error,
    tool_names_sent=lambda body: [t["toolSpec"]["name"] for t in body["toolConfig"]["tools"]],
    authenticated=lambda r: (
        r.headers.get("authorization", "").startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
        and r.headers.get("x-amz-security-token") == AWS_TOKEN
    ),
    credential_echo=lambda r: (
        f"bad token {r.headers.get('x-amz-security-token', '')} for {r.headers.get('authorization')}"
    ),
)

KITS = [OPENAI, ANTHROPIC, BEDROCK]


@pytest.fixture(params=KITS, ids=[k.name for k in KITS])
def kit(request: pytest.FixtureRequest) -> Kit:
    return request.param


@pytest.fixture
def server(kit: Kit) -> Iterator[FakeServer]:
    with kit.new_server() as srv:
        yield srv


@pytest.fixture
async def provider(kit: Kit, server: FakeServer):
    adapter = kit.new_provider(server)
    yield adapter
    await adapter.aclose()


def request(kit: Kit, text: str = "Hello there", **kw: Any) -> ProviderRequest:
    return ProviderRequest(
        provider=kit.name,
        model=kit.model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        tenant_id="t_1",
        **kw,
    )


async def _drain(provider: HttpProvider, req: ProviderRequest) -> list[Any]:
    async with contextlib.aclosing(provider.stream(req)) as events:
        return [event async for event in events]


# ----------------------------------------------------------------------------- answers


async def test_complete_returns_text_and_exact_usage(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    server.script(kit.ok("Paris is sunny."))
    response = await provider.complete(request(kit, temperature=0.0, max_tokens=100))
    assert response.text == "Paris is sunny."
    assert response.usage == kit.usage
    assert response.finish_reason == "stop" and response.tool_calls == ()
    assert response.provider == kit.name and response.model == kit.model and response.raw_model
    assert response.provider_request_id and response.attempts == 1 and response.latency_ms >= 0
    assert response.usage_reported
    (sent,) = server.requests
    assert kit.authenticated(sent)


async def test_default_echo_round_trip(kit: Kit, provider: HttpProvider) -> None:
    response = await provider.complete(request(kit, "one two three"))
    assert response.text == "echo: one two three"
    assert (response.usage.input_tokens, response.usage.output_tokens) in [(5, 4), (3, 4)]


async def test_tool_calls_are_sent_and_decoded(kit: Kit, server: FakeServer, provider: HttpProvider) -> None:
    server.script(kit.tool())
    response = await provider.complete(request(kit, "Weather in Paris?", tools=[WEATHER], tool_choice="auto"))
    assert response.tool_calls == (ToolCall("call_1", "get_weather", {"city": "Paris"}),)
    assert response.finish_reason == "tool_calls"
    assert kit.tool_names_sent(server.requests[0].json()) == ["get_weather"]


# ----------------------------------------------------------------------------- streaming


async def test_stream_yields_deltas_and_final_usage(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    server.script(kit.stream_reply(kit.stream_chunks(["Par", "is is", " sunny."])))
    events = await _drain(provider, request(kit, stream=True))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Par", "is is", " sunny."]
    assert any(isinstance(e, UsageUpdate) for e in events)
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage == kit.usage
    assert end.response.text == "Paris is sunny." and end.finish_reason == "stop"
    assert end.response.time_to_first_token_ms is not None and end.response.usage_reported
    assert sum(isinstance(e, StreamEnd) for e in events) == 1


async def test_stream_assembles_tool_calls(kit: Kit, server: FakeServer, provider: HttpProvider) -> None:
    server.script(kit.stream_reply(kit.stream_tool_chunks()))
    events = await _drain(provider, request(kit, tools=[WEATHER]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id == "call_1" and deltas[0].name == "get_weather"
    assert "".join(d.arguments_delta for d in deltas) == '{"city": "Paris"}'
    end = events[-1]
    assert end.response.tool_calls == (ToolCall("call_1", "get_weather", {"city": "Paris"}),)
    assert end.finish_reason == "tool_calls"


# ----------------------------------------------------------------------------- retries


async def test_rate_limit_waits_as_retry_after_says_then_succeeds(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    server.script(
        kit.error(429, "Rate limit reached", "rate_limit_error", headers={"Retry-After": "1"}), kit.ok("ok")
    )
    started = time.monotonic()
    response = await provider.complete(request(kit))
    elapsed = time.monotonic() - started
    assert response.text == "ok" and response.attempts == 2
    first, second = server.requests
    assert 0.95 <= second.at - first.at < 2.5  # the header's 1 s, not the 10 ms backoff
    assert elapsed >= 0.95


async def test_server_error_is_retried(kit: Kit, server: FakeServer, provider: HttpProvider) -> None:
    server.script(kit.error(500, "Internal error", "api_error"), kit.ok("recovered"))
    response = await provider.complete(request(kit))
    assert response.text == "recovered" and response.attempts == 2 and len(server.requests) == 2


async def test_stream_retries_before_the_first_byte(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    server.script(
        kit.error(503, "Service unavailable", "overloaded_error"), kit.stream_reply(kit.stream_chunks(["hi"]))
    )
    events = await _drain(provider, request(kit, stream=True))
    assert events[-1].response.attempts == 2 and events[-1].response.text == "hi"


async def test_retries_end_with_the_last_error(kit: Kit, server: FakeServer, provider: HttpProvider) -> None:
    server.script(*(kit.error(503, "Service unavailable", "overloaded_error") for _ in range(3)))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(kit))
    assert (info.value.code, info.value.status, info.value.retryable) == ("provider_unavailable", 503, True)
    assert len(server.requests) == 3


@pytest.mark.parametrize(("status", "code"), [(401, "provider_auth_failed"), (400, "provider_bad_request")])
async def test_client_errors_fail_at_once(
    kit: Kit, server: FakeServer, provider: HttpProvider, status: int, code: str
) -> None:
    server.script(kit.error(status, "nope", "invalid_request_error"))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(kit))
    assert info.value.code == code and info.value.status == status and not info.value.retryable
    assert len(server.requests) == 1


async def test_malformed_json_is_a_bad_response(kit: Kit, server: FakeServer, provider: HttpProvider) -> None:
    server.script(Reply(200, {"content-type": "application/json"}, b'{"id": "x", "choices": [tru'))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(kit))
    assert info.value.code == "provider_bad_response" and len(server.requests) == 1


async def test_wrong_shape_json_is_a_bad_response(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    server.script(Reply.json({"unexpected": True}))
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(kit))
    assert info.value.code == "provider_bad_response"


# ----------------------------------------------------------------------------- time and cancellation


async def test_slow_answer_times_out_and_hangs_up(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    slow = kit.ok("too late")
    slow.delay_s = 5
    server.script(slow)
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(kit, timeout_s=0.3))
    assert info.value.code == "provider_timeout" and info.value.retryable
    assert time.monotonic() - started < 1.5
    assert await asyncio.to_thread(server.wait_for_disconnect, 2.0)


async def test_stalled_stream_times_out_with_usage_so_far(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    chunks = kit.stream_chunks(["Par", "is", " is", " sunny."])
    server.script(kit.stream_reply(chunks, pause_before={3: 5.0}))  # three chunks, then silence
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await _drain(provider, request(kit, timeout_s=0.5))
    assert info.value.code == "provider_timeout"
    assert time.monotonic() - started < 2.0
    if kit.name == "anthropic":  # message_start already reported the prompt tokens
        assert info.value.usage_so_far is not None and info.value.usage_so_far.input_tokens == 21
    assert await asyncio.to_thread(server.wait_for_disconnect, 2.0)


async def test_cancelling_mid_stream_closes_the_connection(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    parts = [f"word{i} " for i in range(40)]
    server.script(kit.stream_reply(kit.stream_chunks(parts), chunk_delay_s=0.2))
    first_text = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(provider.stream(request(kit, stream=True))) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    first_text.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(first_text.wait(), 10)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 0.5
    assert await asyncio.to_thread(server.wait_for_disconnect, 2.0)
    assert server.disconnects[0] - cancelled_at < 0.5  # long before the 40 * 0.2 s stream would end


async def test_cancelling_a_pending_call_closes_the_connection(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    slow = kit.ok("never read")
    slow.delay_s = 10
    arrived = threading.Event()

    def answer_slowly(_: Recorded) -> Reply:
        arrived.set()
        return slow

    server.script(answer_slowly)
    task = asyncio.ensure_future(provider.complete(request(kit)))
    assert await asyncio.to_thread(arrived.wait, 5)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # propagated as is, never wrapped
        await task
    assert await asyncio.to_thread(server.wait_for_disconnect, 2.0)
    assert server.disconnects[0] - cancelled_at < 0.5
    assert provider.breaker.state == "closed"  # a cancelled call says nothing about the endpoint


# ----------------------------------------------------------------------------- circuit breaker


async def test_circuit_opens_after_consecutive_failures_then_half_opens(kit: Kit, server: FakeServer) -> None:
    provider = kit.new_provider(
        server, retry=RetryPolicy(max_attempts=1), breaker_failure_threshold=2, breaker_cooldown_s=0.3
    )
    try:
        server.script(*(kit.error(500, "boom", "api_error") for _ in range(2)))
        for _ in range(2):
            with pytest.raises(ProviderError) as info:
                await provider.complete(request(kit))
            assert info.value.code == "provider_unavailable"
        with pytest.raises(ProviderError) as info:
            await provider.complete(request(kit))
        assert info.value.code == "provider_circuit_open" and info.value.retryable
        assert len(server.requests) == 2  # the open circuit did not call the provider

        await asyncio.sleep(0.35)
        server.script(kit.error(502, "still down", "api_error"))
        with pytest.raises(ProviderError) as info:
            await provider.complete(request(kit))  # the half-open probe fails ...
        assert info.value.code == "provider_unavailable" and len(server.requests) == 3
        with pytest.raises(ProviderError) as info:
            await provider.complete(request(kit))  # ... and the circuit is open again
        assert info.value.code == "provider_circuit_open"

        await asyncio.sleep(0.35)
        server.script(kit.ok("back"))
        assert (await provider.complete(request(kit))).text == "back"  # a good probe closes it
        assert provider.breaker.state == "closed"
        assert (await provider.complete(request(kit, "again"))).text == "echo: again"
    finally:
        await provider.aclose()


@dataclass
class _Address:
    base_url: str


async def test_connection_refused_is_unavailable_and_trips_the_breaker(kit: Kit) -> None:
    with kit.new_server() as stopped:
        address = _Address(stopped.base_url)  # nothing listens there any more
    provider = kit.new_provider(address, breaker_failure_threshold=3)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(request(kit))
        assert info.value.code == "provider_unavailable" and info.value.status is None
        assert provider.breaker.state == "open"  # three refused attempts in a row
    finally:
        await provider.aclose()


# ----------------------------------------------------------------------------- broken streams keep usage


async def test_stream_broken_after_usage_keeps_usage_so_far(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    chunks = kit.stream_chunks(["Partial", " answer"])
    if kit.chunks_through_usage is None:
        # Bedrock reports usage in its last event: a stream broken before it has no usage to keep
        server.script(kit.stream_reply(chunks, cut_after=len(chunks) - 1, end="reset"))
        with pytest.raises(ProviderError) as info:
            await _drain(provider, request(kit))
        assert info.value.code == "provider_unavailable" and info.value.usage_so_far is None
        return
    server.script(kit.stream_reply(chunks, cut_after=kit.chunks_through_usage(chunks), end="reset"))
    seen: list[Any] = []
    with pytest.raises(ProviderError) as info:
        async with contextlib.aclosing(provider.stream(request(kit))) as events:
            async for event in events:
                seen.append(event)
    assert info.value.code == "provider_unavailable"
    assert info.value.usage_so_far == kit.usage
    assert "".join(e.text for e in seen if isinstance(e, TextDelta)) == "Partial answer"


async def test_stream_ending_without_its_final_event_is_bad_response(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    chunks = kit.stream_chunks(["Partial"])
    server.script(
        kit.stream_reply(chunks, cut_after=len(chunks) - 1, end="eof")
    )  # clean end, last event missing
    with pytest.raises(ProviderError) as info:
        await _drain(provider, request(kit))
    assert info.value.code == "provider_bad_response"
    if kit.chunks_through_usage is not None:
        assert info.value.usage_so_far == kit.usage


async def test_garbage_in_a_stream_is_bad_response(
    kit: Kit, server: FakeServer, provider: HttpProvider
) -> None:
    chunks = kit.stream_chunks(["ok"])
    garbage = (
        b"data: {not json\n\n"
        if kit.name != "bedrock"
        else b"\x00\x00\x00\x20garbage-garbage-garbage-garbage"
    )
    server.script(kit.stream_reply(chunks[:2] + [garbage] + chunks[2:]))
    with pytest.raises(ProviderError) as info:
        await _drain(provider, request(kit))
    assert info.value.code == "provider_bad_response"


# ----------------------------------------------------------------------------- credentials


def _all_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err)) + repr(err) + str(err)


async def test_credentials_never_appear_in_errors_or_logs(
    kit: Kit, server: FakeServer, provider: HttpProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # including httpx/httpcore debug logs
    errors: list[ProviderError] = []
    server.script(
        kit.error(500, "transient", "api_error"),
        lambda r: kit.error(401, kit.credential_echo(r), "authentication_error"),
    )
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(kit))
    errors.append(info.value)
    assert info.value.code == "provider_auth_failed"
    assert "[redacted]" in info.value.message  # the echoed credential was scrubbed

    slow = kit.ok("late")
    slow.delay_s = 3
    server.script(slow)
    with pytest.raises(ProviderError) as info:
        await provider.complete(request(kit, timeout_s=0.2))
    errors.append(info.value)

    chunks = kit.stream_chunks(["x"])
    server.script(kit.stream_reply(chunks, cut_after=2, end="reset"))
    with pytest.raises(ProviderError) as info:
        await _drain(provider, request(kit))
    errors.append(info.value)

    missing = ProviderRequest(
        provider=kit.name,
        model=kit.model,
        messages=[{"role": "user", "content": "x"}],
        secret_ref="not-there",
    )
    with pytest.raises(ProviderError) as info:
        await provider.complete(missing)
    errors.append(info.value)
    assert info.value.code == "provider_auth_failed"

    texts = [_all_text(e) for e in errors]
    texts += [r.getMessage() for r in caplog.records] + [str(r.__dict__) for r in caplog.records]
    for secret in ALL_SECRETS:
        for text in texts:
            assert secret not in text
