"""Request bodies each adapter builds from the neutral request, usage decoding, and the stream
decoders (SSE lines, AWS event-stream frames), without any network."""

import json
import struct
import zlib

import pytest

from run_executor.providers import (
    AnthropicConfig,
    AnthropicProvider,
    BedrockConfig,
    BedrockProvider,
    OpenAIConfig,
    OpenAIProvider,
    ProviderRequest,
    StaticSecretResolver,
    TokenUsage,
    ToolCall,
)
from run_executor.providers.anthropic import usage_from_anthropic
from run_executor.providers.bedrock import usage_from_bedrock
from run_executor.providers.eventstream import EventStreamDecoder, EventStreamError
from run_executor.providers.http_provider import scrubber
from run_executor.providers.openai import usage_from_openai
from run_executor.providers.sse import iter_sse

pytestmark = pytest.mark.unit

SECRETS = StaticSecretResolver({})
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def request(**kw) -> ProviderRequest:
    base = {"provider": "x", "model": "m", "messages": CONVERSATION}
    return ProviderRequest(**{**base, **kw})


async def test_openai_body() -> None:
    provider = OpenAIProvider(OpenAIConfig(base_url="http://h"), SECRETS)
    body = provider.body(
        request(
            model="gpt-4o",
            tools=[WEATHER],
            tool_choice="get_weather",
            temperature=0.2,
            max_tokens=50,
            top_p=0.9,
            stop=["END"],
        ),
        stream=True,
    )
    assert body["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert body["messages"][3] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["parameters"],
                "description": "Weather of a city",
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.2, 0.9, 50, ["END"])
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    reasoning = provider.body(request(model="o3-mini-2025-01-31", max_tokens=50), stream=False)
    assert (
        reasoning["max_completion_tokens"] == 50
        and "max_tokens" not in reasoning
        and "stream" not in reasoning
    )
    await provider.aclose()


async def test_anthropic_body_lifts_system_and_sends_tool_blocks() -> None:
    provider = AnthropicProvider(AnthropicConfig(base_url="http://h", default_max_tokens=1024), SECRETS)
    body = provider.body(request(tools=[WEATHER], tool_choice="required", stop=["END"]), stream=False)
    assert body["system"] == "You are terse."
    assert body["max_tokens"] == 1024
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]},
    ]
    assert body["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER["parameters"], "description": "Weather of a city"}
    ]
    assert body["tool_choice"] == {"type": "any"} and body["stop_sequences"] == ["END"]
    merged = provider.body(
        request(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]), stream=True
    )
    assert merged["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert merged["stream"] is True
    await provider.aclose()


async def test_bedrock_body_is_converse_shaped() -> None:
    provider = BedrockProvider(BedrockConfig(region="eu-west-1"), SECRETS)
    assert provider.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    body = provider.body(
        request(tools=[WEATHER], tool_choice="auto", max_tokens=64, temperature=0.1, top_p=0.5, stop=["x"])
    )
    assert body["system"] == [{"text": "You are terse."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}], "status": "success"}}
            ],
        },
    ]
    assert body["inferenceConfig"] == {
        "maxTokens": 64,
        "temperature": 0.1,
        "topP": 0.5,
        "stopSequences": ["x"],
    }
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": WEATHER["parameters"]},
                    "description": "Weather of a city",
                }
            }
        ],
        "toolChoice": {"auto": {}},
    }
    plain = provider.body(
        request(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER], tool_choice="none")
    )
    assert "toolConfig" not in plain and "inferenceConfig" not in plain
    await provider.aclose()


def test_usage_conventions_of_each_provider() -> None:
    openai = usage_from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 25},
        }
    )
    assert openai == TokenUsage(100, 40, 60, 25, cached_included_in_input=True)
    assert (openai.total_input_tokens, openai.total_output_tokens) == (100, 40)

    anthropic = usage_from_anthropic(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 200,
            "cache_creation_input_tokens": 30,
        }
    )
    assert anthropic == TokenUsage(10, 5, 200, 0, 30)
    assert anthropic.total_input_tokens == 240
    later = usage_from_anthropic({"output_tokens": 9}, anthropic)  # message_delta: cumulative, partial
    assert (later.input_tokens, later.output_tokens, later.cached_input_tokens) == (10, 9, 200)

    bedrock = usage_from_bedrock(
        {"inputTokens": 7, "outputTokens": 3, "totalTokens": 14, "cacheReadInputTokens": 4}
    )
    assert bedrock == TokenUsage(7, 3, 4, 0, 0) and bedrock.total_input_tokens == 11
    assert openai.plus(openai).input_tokens == 200
    with pytest.raises(ValueError):
        openai.plus(anthropic)


def test_tool_call_arguments_that_are_not_json_are_kept_raw() -> None:
    from run_executor.providers.base import tool_call_from_json

    assert tool_call_from_json("c", "f", '{"a": 1}') == ToolCall("c", "f", {"a": 1})
    assert tool_call_from_json("c", "f", "") == ToolCall("c", "f", {})
    assert tool_call_from_json("c", "f", '{"a": ') == ToolCall("c", "f", {}, '{"a": ')
    assert tool_call_from_json("c", "f", "[1]") == ToolCall("c", "f", {}, "[1]")


def test_scrubber_removes_credentials() -> None:
    scrub = scrubber(("sk-live-123456", "", "ab"))
    assert scrub("Incorrect API key provided: sk-live-123456.") == "Incorrect API key provided: [redacted]."
    assert (
        scrub("ab stays: short values are not treated as secrets")
        == "ab stays: short values are not treated as secrets"
    )


async def _lines(*lines: str):
    for line in lines:
        yield line


async def test_sse_parser() -> None:
    events = [
        e
        async for e in iter_sse(
            _lines(
                ": keep-alive", "event: a", 'data: {"x":', "data: 1}", "", "id: 7", "retry: 10", "data:[DONE]"
            )
        )
    ]
    assert [(e.event, e.data) for e in events] == [("a", '{"x":\n1}'), (None, "[DONE]")]


def _frame(headers: dict[str, str], payload: bytes) -> bytes:
    hb = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 16 + len(hb) + len(payload), len(hb))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + hb + payload
    return body + struct.pack(">I", zlib.crc32(body))


def test_event_stream_decoder_handles_split_frames_and_checks_crcs() -> None:
    one = _frame(
        {":event-type": "messageStart", ":message-type": "event"}, json.dumps({"role": "assistant"}).encode()
    )
    two = _frame({":event-type": "messageStop", ":message-type": "event"}, b'{"stopReason":"end_turn"}')
    data = one + two
    decoder = EventStreamDecoder()
    messages = []
    for i in range(0, len(data), 7):  # arbitrary network chunking
        messages += decoder.feed(data[i : i + 7])
    assert [m.headers[":event-type"] for m in messages] == ["messageStart", "messageStop"]
    assert json.loads(messages[1].payload) == {"stopReason": "end_turn"}
    assert decoder.pending_bytes == 0

    corrupt = bytearray(one)
    corrupt[-6] ^= 0xFF
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(bytes(corrupt))
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(b"\x00\x00\x00\x10" + b"\x00" * 12)
