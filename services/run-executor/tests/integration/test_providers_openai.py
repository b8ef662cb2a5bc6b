"""OpenAI adapter details against the fake: the exact request it sends, OpenAI-compatible servers
(no key, base URL with a path), SSE split at any byte, `retry-after-ms`, errors inside a stream."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import pytest

from run_executor.providers import (
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
)

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # makes services/run-executor/tests/fakes importable
from fakes import provider_openai as fo  # noqa: E402
from fakes.provider_http import FakeServer, Reply  # noqa: E402

pytestmark = pytest.mark.integration

KEY = "sk-proj-test-0123456789"


@pytest.fixture
def server():
    with FakeServer(fo.echo) as srv:
        yield srv


def provider_for(base_url: str, **cfg) -> OpenAIProvider:
    config = OpenAIConfig(base_url=base_url, secret_ref="openai", retry=RetryPolicy(base_delay_s=0.01), **cfg)
    return OpenAIProvider(config, StaticSecretResolver({"openai": KEY}), breakers=CircuitBreakerRegistry())


def req(**kw) -> ProviderRequest:
    base = {"provider": "openai", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    return ProviderRequest(**{**base, **kw})


async def test_the_request_on_the_wire(server: FakeServer) -> None:
    provider = provider_for(server.base_url)
    try:
        await provider.complete(req(temperature=0.3, max_tokens=20, stop=["\n\n"]))
        await provider.complete(req(stream=True))  # complete() never asks for a stream
        async with contextlib.aclosing(provider.stream(req(model="o3-mini", max_tokens=99))) as events:
            [e async for e in events]
    finally:
        await provider.aclose()
    plain, again, streamed = server.requests
    assert plain.method == "POST" and plain.path == "/v1/chat/completions"
    assert plain.headers["authorization"] == f"Bearer {KEY}"
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.3,
        "max_tokens": 20,
        "stop": ["\n\n"],
    }
    assert "stream" not in again.json()
    body = streamed.json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 99 and "max_tokens" not in body
    assert streamed.headers["accept"] == "text/event-stream"


async def test_openai_compatible_server_without_key_and_with_a_base_path(server: FakeServer) -> None:
    config = OpenAIConfig(
        base_url=f"{server.base_url}/ollama/", name="ollama"
    )  # no secret_ref: no auth header
    provider = OpenAIProvider(config, StaticSecretResolver({}))
    try:
        response = await provider.complete(req(provider="ollama", model="llama3.1:8b"))
    finally:
        await provider.aclose()
    assert response.provider == "ollama" and response.text == "echo: Hi"
    (sent,) = server.requests
    assert sent.path == "/ollama/v1/chat/completions" and "authorization" not in sent.headers


async def test_sse_split_at_arbitrary_byte_boundaries(server: FakeServer) -> None:
    whole = b"".join(
        fo.stream_chunks(["Héllo", ", wörld", "!"], usage_block=fo.usage(9, 4, cached=0, reasoning=0))
    )
    server.script(fo.stream_reply([whole[i : i + 7] for i in range(0, len(whole), 7)]))
    provider = provider_for(server.base_url)
    try:
        events = [e async for e in provider.stream(req())]
    finally:
        await provider.aclose()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Héllo, wörld!"
    assert events[-1].usage == TokenUsage(9, 4, cached_included_in_input=True)


async def test_retry_after_ms_is_honoured(server: FakeServer) -> None:
    server.script(
        fo.error(
            429,
            "Rate limit reached for gpt-4o-mini",
            "requests",
            headers={"retry-after-ms": "300", "retry-after": "1"},
        ),
        fo.echo,
    )
    provider = provider_for(server.base_url)
    try:
        started = time.monotonic()
        response = await provider.complete(req())
        elapsed = time.monotonic() - started
    finally:
        await provider.aclose()
    assert response.attempts == 2
    assert 0.28 <= server.requests[1].at - server.requests[0].at < 0.9 and elapsed < 0.9


async def test_an_error_event_inside_the_stream(server: FakeServer) -> None:
    chunks = fo.stream_chunks(["Hel"])
    error_event = fo.sse(
        {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
    )
    server.script(fo.stream_reply(chunks[:2] + [error_event]))
    provider = provider_for(server.base_url)
    try:
        with pytest.raises(ProviderError) as info:
            [e async for e in provider.stream(req())]
    finally:
        await provider.aclose()
    assert info.value.code == "provider_unavailable" and "server_error" in info.value.message


async def test_refusal_and_length_finish(server: FakeServer) -> None:
    body = fo.completion(None, finish_reason="length")
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    server.script(Reply.json(body))
    provider = provider_for(server.base_url)
    try:
        response = await provider.complete(req())
    finally:
        await provider.aclose()
    assert response.text == "I can't help with that." and response.finish_reason == "length"
    assert response.raw_finish_reason == "length" and response.raw_model == fo.MODEL


async def test_collects_to_the_same_answer_as_complete(server: FakeServer) -> None:
    provider = provider_for(server.base_url)
    try:
        plain = await provider.complete(req(messages=[{"role": "user", "content": "same answer please"}]))
        events = [
            e
            async for e in provider.stream(req(messages=[{"role": "user", "content": "same answer please"}]))
        ]
    finally:
        await provider.aclose()
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert (end.response.text, end.usage) == (plain.text, plain.usage)


async def test_a_server_that_reports_no_usage_is_flagged(server: FakeServer) -> None:
    body = fo.completion("hi")
    del body["usage"]
    chunks = fo.stream_chunks(["hi"])
    server.script(Reply.json(body), fo.stream_reply(chunks[:-2] + chunks[-1:]))  # no usage chunk
    provider = provider_for(server.base_url)
    try:
        plain = await provider.complete(req())
        streamed = [e async for e in provider.stream(req())][-1]
    finally:
        await provider.aclose()
    assert plain.usage_reported is False and plain.usage.total_input_tokens == 0
    assert streamed.response.usage_reported is False and streamed.response.text == "hi"
