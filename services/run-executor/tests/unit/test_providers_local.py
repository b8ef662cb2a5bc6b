"""The offline `local` provider: deterministic answers, token counts, tool calls, streaming in words,
artificial latency (for cancellation), injected errors; and the registry dispatching to it."""

import asyncio
import contextlib

import pytest

from run_executor.providers import (
    LocalProvider,
    LocalProviderConfig,
    Provider,
    ProviderError,
    ProviderRegistry,
    ProviderRequest,
    StreamEnd,
    TextDelta,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    UsageUpdate,
    collect,
)

pytestmark = pytest.mark.unit

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def req(*messages: dict, **kw) -> ProviderRequest:
    return ProviderRequest(provider="local", model="local-echo", messages=list(messages), **kw)


async def test_echo_with_whitespace_token_counts() -> None:
    provider = LocalProvider()
    assert isinstance(provider, Provider)
    response = await provider.complete(
        req({"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there world"})
    )
    assert response.text == "echo: hello there world"
    assert response.usage == TokenUsage(input_tokens=5, output_tokens=4)
    assert response.finish_reason == "stop" and response.tool_calls == ()
    again = await provider.complete(
        req({"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there world"})
    )
    assert again.provider_request_id == response.provider_request_id  # deterministic


async def test_template_max_tokens_and_stop() -> None:
    provider = LocalProvider(LocalProviderConfig(template="You said: {last_user}. Done."))
    full = await provider.complete(req({"role": "user", "content": "a b c"}))
    assert full.text == "You said: a b c. Done."
    short = await provider.complete(req({"role": "user", "content": "a b c"}, max_tokens=3))
    assert (short.text, short.finish_reason, short.usage.output_tokens) == ("You said: a", "length", 3)
    stopped = await provider.complete(req({"role": "user", "content": "a b c"}, stop=[". Done"]))
    assert (stopped.text, stopped.finish_reason) == ("You said: a b c", "stop")


async def test_tool_call_when_the_message_names_a_tool() -> None:
    provider = LocalProvider()
    request = req(
        {"role": "user", "content": 'use get_weather with {"city": "Paris"} please'}, tools=[WEATHER]
    )
    response = await provider.complete(request)
    assert response.finish_reason == "tool_calls" and response.text == ""
    (call,) = response.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    assert call.id.startswith("call_local_")
    assert response.usage.output_tokens == 3  # get_weather {"city": "Paris"}

    no_tool = await provider.complete(
        req({"role": "user", "content": "what is the weather"}, tools=[WEATHER])
    )
    assert no_tool.tool_calls == ()
    forbidden = await provider.complete(
        req({"role": "user", "content": "get_weather now"}, tools=[WEATHER], tool_choice="none")
    )
    assert forbidden.tool_calls == ()
    required = await provider.complete(
        req({"role": "user", "content": "anything"}, tools=[WEATHER], tool_choice="required")
    )
    assert required.tool_calls[0].name == "get_weather" and required.tool_calls[0].arguments == {}


async def test_tool_result_round_trip_ends_the_loop() -> None:
    provider = LocalProvider()
    first = await provider.complete(req({"role": "user", "content": "get_weather {}"}, tools=[WEATHER]))
    call = first.tool_calls[0]
    second = await provider.complete(
        req(
            {"role": "user", "content": "get_weather {}"},
            {"role": "assistant", "content": None, "tool_calls": [call.as_message_part()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
            tools=[WEATHER],
        )
    )
    assert second.text == "tool get_weather returned: sunny, 21C"
    assert second.tool_calls == ()
    assert second.usage.input_tokens == 2 + 2 + 2  # user words + call name/args words + tool result words


async def test_stream_in_word_chunks_with_usage_and_final_event() -> None:
    events = [e async for e in LocalProvider().stream(req({"role": "user", "content": "one two three"}))]
    assert isinstance(events[0], UsageUpdate) and events[0].usage.input_tokens == 3
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert deltas == ["echo:", " one", " two", " three"]
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage == TokenUsage(input_tokens=3, output_tokens=4)
    assert end.response.text == "echo: one two three" and end.finish_reason == "stop"


async def test_stream_of_a_tool_call() -> None:
    events = [
        e
        async for e in LocalProvider().stream(
            req({"role": "user", "content": "get_weather"}, tools=[WEATHER])
        )
    ]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].name == "get_weather" and deltas[0].arguments_delta == "{}"
    assert events[-1].response.tool_calls == (ToolCall(deltas[0].id, "get_weather", {}),)


async def test_latency_makes_cancellation_observable() -> None:
    provider = LocalProvider(LocalProviderConfig(chunk_delay_s=0.5))
    seen: list[str] = []

    async def consume() -> None:
        async with contextlib.aclosing(
            provider.stream(req({"role": "user", "content": "a b c d e f"}))
        ) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    seen.append(event.text)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["echo:"]

    slow = asyncio.ensure_future(
        provider.complete(req({"role": "user", "content": "x"}, metadata={"local_latency_s": 30}))
    )
    await asyncio.sleep(0.05)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_injected_errors_and_bad_requests() -> None:
    provider = LocalProvider()
    with pytest.raises(ProviderError) as info:
        await provider.complete(
            req({"role": "user", "content": "x"}, metadata={"local_error": "provider_rate_limited"})
        )
    assert info.value.code == "provider_rate_limited" and info.value.retryable
    with pytest.raises(ProviderError) as info:
        await provider.complete(req({"role": "robot", "content": "x"}))
    assert info.value.code == "provider_bad_request"
    with pytest.raises(ProviderError) as info:
        await provider.complete(req())
    assert info.value.code == "provider_bad_request"


async def test_registry_dispatches_by_name_and_executes_streams() -> None:
    registry = ProviderRegistry([LocalProvider(), LocalProvider(LocalProviderConfig(name="local-slow"))])
    assert registry.names == ["local", "local-slow"]
    events: list = []

    async def on_event(event) -> None:
        events.append(event)

    streamed = await registry.execute(req({"role": "user", "content": "hi"}, stream=True), on_event)
    assert streamed.text == "echo: hi" and isinstance(events[-1], StreamEnd)
    plain = await registry.execute(req({"role": "user", "content": "hi"}))
    assert plain.text == streamed.text
    assert (await collect(registry.stream(req({"role": "user", "content": "hi"})))).text == "echo: hi"
    with pytest.raises(ProviderError) as info:
        await registry.complete(
            ProviderRequest(provider="nope", model="m", messages=[{"role": "user", "content": "x"}])
        )
    assert info.value.code == "provider_bad_request"
    with pytest.raises(ValueError):
        ProviderRegistry([LocalProvider(), LocalProvider()])
    await registry.aclose()
