"""Anthropic adapter details against the fake: headers and body (system lifted out, tool results),
usage assembled from `message_start` + `message_delta`, errors inside a stream, 529 overloaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from run_executor.providers import (
    AnthropicConfig,
    AnthropicProvider,
    CircuitBreakerRegistry,
    ProviderError,
    ProviderRequest,
    RetryPolicy,
    StaticSecretResolver,
    TokenUsage,
    UsageUpdate,
)

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # makes services/run-executor/tests/fakes importable
from fakes import provider_anthropic as fa  # noqa: E402
from fakes.provider_http import FakeServer  # noqa: E402

pytestmark = pytest.mark.integration

KEY = "sk-ant-api03-test-0123456789"


@pytest.fixture
def server():
    with FakeServer(fa.echo) as srv:
        yield srv


@pytest.fixture
async def provider(server: FakeServer):
    config = AnthropicConfig(
        base_url=server.base_url, secret_ref="anthropic", retry=RetryPolicy(base_delay_s=0.01)
    )
    adapter = AnthropicProvider(
        config, StaticSecretResolver({"anthropic": KEY}), breakers=CircuitBreakerRegistry()
    )
    yield adapter
    await adapter.aclose()


def req(**kw) -> ProviderRequest:
    base = {
        "provider": "anthropic",
        "model": "claude-3-5-haiku-latest",
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [{"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ],
    }
    return ProviderRequest(**{**base, **kw})


async def test_headers_and_body(server: FakeServer, provider: AnthropicProvider) -> None:
    server.script(fa.echo)
    await provider.complete(req(max_tokens=300, temperature=0.5))
    (sent,) = server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.json()
    assert body["system"] == "Answer in French."
    assert body["max_tokens"] == 300 and body["temperature"] == 0.5
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]


async def test_stream_usage_from_message_start_and_message_delta(
    server: FakeServer, provider: AnthropicProvider
) -> None:
    server.script(
        fa.stream_reply(fa.stream_events(["Il fait", " beau."], usage_block=fa.usage(40, 7, cache_read=1000)))
    )
    events = [e async for e in provider.stream(req())]
    updates = [e.usage for e in events if isinstance(e, UsageUpdate)]
    assert updates == [TokenUsage(40, 1, 1000), TokenUsage(40, 7, 1000)]
    assert events[-1].usage == TokenUsage(40, 7, 1000) and events[-1].usage.total_input_tokens == 1040
    assert (
        events[-1].response.raw_model == fa.MODEL
        and events[-1].response.provider_request_id == "req_stream_1"
    )


async def test_stream_broken_right_after_message_start_keeps_the_prompt_tokens(
    server: FakeServer, provider: AnthropicProvider
) -> None:
    chunks = fa.stream_events(["never seen"], usage_block=fa.usage(40, 7))
    server.script(fa.stream_reply(chunks, cut_after=1, end="reset"))
    with pytest.raises(ProviderError) as info:
        [e async for e in provider.stream(req())]
    assert info.value.code == "provider_unavailable"
    assert info.value.usage_so_far == TokenUsage(40, 1)


async def test_overloaded_error_event_mid_stream(server: FakeServer, provider: AnthropicProvider) -> None:
    chunks = fa.stream_events(["Il"], usage_block=fa.usage(40, 7))
    overloaded = fa.event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
    server.script(fa.stream_reply(chunks[:4] + [overloaded]))
    with pytest.raises(ProviderError) as info:
        [e async for e in provider.stream(req())]
    assert info.value.code == "provider_unavailable" and "overloaded_error" in info.value.message
    assert info.value.usage_so_far == TokenUsage(40, 1)


async def test_529_overloaded_is_retried(server: FakeServer, provider: AnthropicProvider) -> None:
    server.script(fa.error(529, "Overloaded", "overloaded_error"), fa.echo)
    response = await provider.complete(req())
    assert response.attempts == 2 and response.text == "echo: sunny"
