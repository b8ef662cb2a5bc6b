"""Anthropic Messages API (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .base import (
    ErrorCode,
    FinishReason,
    ProviderError,
    ProviderRequest,
    StreamEvent,
    TokenUsage,
    ToolCall,
    content_text,
    message_tool_calls,
    tool_spec,
)
from .http_provider import Answer, HttpProvider, HttpProviderConfig, StreamAssembler, as_int, bad_response
from .sse import iter_sse

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_STREAM_ERRORS = {
    "overloaded_error": ErrorCode.UNAVAILABLE,
    "api_error": ErrorCode.UNAVAILABLE,
    "rate_limit_error": ErrorCode.RATE_LIMITED,
    "authentication_error": ErrorCode.AUTH_FAILED,
    "permission_error": ErrorCode.AUTH_FAILED,
    "invalid_request_error": ErrorCode.BAD_REQUEST,
    "not_found_error": ErrorCode.BAD_REQUEST,
    "request_too_large": ErrorCode.BAD_REQUEST,
}


@dataclass(frozen=True, kw_only=True)
class AnthropicConfig(HttpProviderConfig):
    """`default_max_tokens` is sent when the request has none (the API requires `max_tokens`)."""

    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = 4096


def usage_from_anthropic(usage: Mapping[str, Any] | None, previous: TokenUsage | None = None) -> TokenUsage:
    """Anthropic usage: `input_tokens` excludes `cache_read_input_tokens` and
    `cache_creation_input_tokens`. In a stream, `message_delta` repeats cumulative counts: fields it
    lacks keep their earlier value."""
    base = previous or TokenUsage(cached_included_in_input=False)
    if not usage:
        return base

    def pick(key: str, old: int) -> int:
        return as_int(usage[key]) if usage.get(key) is not None else old

    return TokenUsage(
        input_tokens=pick("input_tokens", base.input_tokens),
        output_tokens=pick("output_tokens", base.output_tokens),
        cached_input_tokens=pick("cache_read_input_tokens", base.cached_input_tokens),
        cache_write_input_tokens=pick("cache_creation_input_tokens", base.cache_write_input_tokens),
        reasoning_tokens=0,
        cached_included_in_input=False,
        reasoning_included_in_output=True,
    )


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [
        dict(part) if isinstance(part, Mapping) else {"type": "text", "text": str(part)} for part in content
    ]


def wire_messages(messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """(system prompt, Anthropic messages): system messages are lifted out, tool results become
    `tool_result` blocks of a user turn, and consecutive turns of one role are merged."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            system.append(content_text(message.get("content")))
            continue
        if role == "tool":
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": content_text(message.get("content")),
            }
            if message.get("is_error"):
                result["is_error"] = True
            wire_role, blocks = "user", [result]
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in message_tool_calls(message)
            ]
            wire_role = "assistant"
        else:
            wire_role, blocks = "user", _blocks(message.get("content"))
        if out and out[-1]["role"] == wire_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": wire_role, "content": blocks})
    for message in out:  # plain single-text turns go as strings, as people write them
        content = message["content"]
        if len(content) == 1 and content[0].get("type") == "text" and set(content[0]) == {"type", "text"}:
            message["content"] = content[0]["text"]
    return ("\n\n".join(s for s in system if s) or None), out


class AnthropicProvider(HttpProvider):
    kind = "anthropic"
    FINISH_REASONS = _FINISH
    request_id_header = "request-id"
    config: AnthropicConfig

    def __init__(self, config: AnthropicConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)

    def body(self, req: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        system, messages = wire_messages(req.messages)
        body: dict[str, Any] = {
            "model": req.model,
            "max_tokens": req.max_tokens or self.config.default_max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = system
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.stop:
            body["stop_sequences"] = list(req.stop)
        if req.tools:
            tools = []
            for tool in req.tools:
                name, description, parameters = tool_spec(tool)
                spec: dict[str, Any] = {"name": name, "input_schema": parameters}
                if description:
                    spec["description"] = description
                tools.append(spec)
            body["tools"] = tools
            choice = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
            if req.tool_choice in choice:
                body["tool_choice"] = choice[req.tool_choice]
            elif req.tool_choice:
                body["tool_choice"] = {"type": "tool", "name": req.tool_choice}
        if stream:
            body["stream"] = True
        return body

    def build_request(
        self, req: ProviderRequest, credential: Any, *, stream: bool, timeout: float
    ) -> httpx.Request:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": self.config.anthropic_version,
        }
        if credential:
            headers["x-api-key"] = credential
        return self.post("/v1/messages", json.dumps(self.body(req, stream=stream)).encode(), headers, timeout)

    def parse_answer(self, req: ProviderRequest, data: dict[str, Any], headers: httpx.Headers) -> Answer:
        if data.get("type") == "error":
            raise self._stream_error(data)
        content = data.get("content")
        if not isinstance(content, list):
            raise bad_response(self.name, "response has no content list")
        text = "".join(block["text"] for block in content if block.get("type") == "text")
        calls = tuple(
            ToolCall(str(block["id"]), str(block["name"]), dict(block.get("input") or {}))
            for block in content
            if block.get("type") == "tool_use"
        )
        raw_finish = data.get("stop_reason")
        return Answer(
            text=text,
            tool_calls=calls,
            raw_finish_reason=raw_finish,
            finish_reason=self.finish_reason(raw_finish, bool(calls)),
            usage=usage_from_anthropic(data.get("usage")),
            raw_model=data.get("model"),
            provider_request_id=headers.get(self.request_id_header) or data.get("id"),
            usage_reported=bool(data.get("usage")),
        )

    def _stream_error(self, event: Mapping[str, Any]) -> ProviderError:
        err = event.get("error") or {}
        kind = str(err.get("type") or "error")
        code = _STREAM_ERRORS.get(kind, ErrorCode.BAD_RESPONSE)
        return ProviderError(
            code, f"{self.name}: {kind}: {str(err.get('message') or '')[:300]}", provider=self.name
        )

    async def decode_stream(
        self, req: ProviderRequest, response: httpx.Response, acc: StreamAssembler
    ) -> AsyncIterator[StreamEvent]:
        tool_index: dict[int, int] = {}  # content block index -> tool call ordinal
        async for sse in iter_sse(response.aiter_lines()):
            event = json.loads(sse.data)
            if not isinstance(event, dict):
                raise bad_response(self.name, "stream event is not a JSON object")
            kind = event.get("type") or sse.event
            if kind == "message_start":
                message = event["message"]
                acc.raw_model = message.get("model")
                acc.provider_request_id = acc.provider_request_id or message.get("id")
                yield acc.report_usage(usage_from_anthropic(message.get("usage")))
            elif kind == "content_block_start":
                block = event["content_block"]
                if block.get("type") == "text" and block.get("text"):
                    yield acc.text(block["text"])
                elif block.get("type") == "tool_use":
                    ordinal = tool_index.setdefault(int(event["index"]), len(tool_index))
                    yield acc.tool_delta(ordinal, block.get("id"), block.get("name"), "")
            elif kind == "content_block_delta":
                delta = event["delta"]
                if delta.get("type") == "text_delta":
                    yield acc.text(delta["text"])
                elif delta.get("type") == "input_json_delta":
                    ordinal = tool_index.setdefault(int(event["index"]), len(tool_index))
                    yield acc.tool_delta(ordinal, None, None, delta.get("partial_json") or "")
            elif kind == "message_delta":
                stop = (event.get("delta") or {}).get("stop_reason")
                if stop:
                    acc.raw_finish_reason = stop
                if event.get("usage"):
                    yield acc.report_usage(usage_from_anthropic(event["usage"], acc.usage))
            elif kind == "message_stop":
                acc.completed = True
                return
            elif kind == "error":
                raise self._stream_error(event)
            # ping, content_block_stop, thinking/signature deltas: nothing to relay
