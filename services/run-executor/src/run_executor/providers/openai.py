"""OpenAI chat completions (`POST {base}/v1/chat/completions`), and every server speaking it
(Ollama, vLLM, LM Studio, LiteLLM ...): point `base_url` at it and give it its own `name`."""

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
    message_tool_calls,
    tool_call_from_json,
    tool_spec,
)
from .http_provider import Answer, HttpProvider, HttpProviderConfig, StreamAssembler, as_int, bad_response
from .sse import iter_sse

# Reasoning models refuse `max_tokens` and want `max_completion_tokens`.
_REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


@dataclass(frozen=True, kw_only=True)
class OpenAIConfig(HttpProviderConfig):
    """`base_url` without `/v1` (e.g. `http://127.0.0.1:11434` for Ollama). `max_tokens_param` names
    the field for `max_tokens` (reasoning models always get `max_completion_tokens`)."""

    base_url: str = "https://api.openai.com"
    max_tokens_param: str = "max_tokens"


def usage_from_openai(usage: Mapping[str, Any] | None) -> TokenUsage:
    """OpenAI usage: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`, and
    `completion_tokens` includes `completion_tokens_details.reasoning_tokens`."""
    if not usage:
        return TokenUsage(cached_included_in_input=True, reasoning_included_in_output=True)
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return TokenUsage(
        input_tokens=as_int(usage.get("prompt_tokens")),
        output_tokens=as_int(usage.get("completion_tokens")),
        cached_input_tokens=as_int(prompt_details.get("cached_tokens")),
        reasoning_tokens=as_int(completion_details.get("reasoning_tokens")),
        cached_included_in_input=True,
        reasoning_included_in_output=True,
    )


def _wire_message(message: Mapping[str, Any]) -> dict[str, Any]:
    role = message["role"]
    out: dict[str, Any] = {"role": role, "content": message.get("content")}
    if role == "assistant":
        calls = message_tool_calls(message)
        if calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": c.raw_arguments
                        if c.raw_arguments is not None
                        else json.dumps(c.arguments),
                    },
                }
                for c in calls
            ]
    if role == "tool":
        out["tool_call_id"] = message["tool_call_id"]
        if out["content"] is None:
            out["content"] = ""
    if message.get("name") and role in ("user", "system"):
        out["name"] = message["name"]
    return out


def _stream_error(chunk: Mapping[str, Any], provider: str) -> ProviderError:
    err = chunk.get("error") or {}
    kind = str(err.get("type") or err.get("code") or "")
    message = str(err.get("message") or "error event in stream")[:300]
    code = ErrorCode.RATE_LIMITED if "rate" in kind else ErrorCode.UNAVAILABLE
    return ProviderError(code, f"{provider}: {kind or 'error'}: {message}", provider=provider)


class OpenAIProvider(HttpProvider):
    kind = "openai"
    FINISH_REASONS = _FINISH
    request_id_header = "x-request-id"
    config: OpenAIConfig

    def __init__(self, config: OpenAIConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)

    def body(self, req: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": req.model, "messages": [_wire_message(m) for m in req.messages]}
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.max_tokens is not None:
            reasoning = req.model.startswith(_REASONING_MODEL_PREFIXES)
            body["max_completion_tokens" if reasoning else self.config.max_tokens_param] = req.max_tokens
        if req.stop:
            body["stop"] = list(req.stop)
        if req.tools:
            tools = []
            for tool in req.tools:
                name, description, parameters = tool_spec(tool)
                function: dict[str, Any] = {"name": name, "parameters": parameters}
                if description:
                    function["description"] = description
                tools.append({"type": "function", "function": function})
            body["tools"] = tools
            if req.tool_choice in ("auto", "none", "required"):
                body["tool_choice"] = req.tool_choice
            elif req.tool_choice:
                body["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice}}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def build_request(
        self, req: ProviderRequest, credential: Any, *, stream: bool, timeout: float
    ) -> httpx.Request:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        if credential:
            headers["authorization"] = f"Bearer {credential}"
        return self.post(
            "/v1/chat/completions", json.dumps(self.body(req, stream=stream)).encode(), headers, timeout
        )

    def parse_answer(self, req: ProviderRequest, data: dict[str, Any], headers: httpx.Headers) -> Answer:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise bad_response(self.name, "response has no choices")
        choice = choices[0]
        message = choice["message"]
        calls = tuple(
            tool_call_from_json(
                str(c["id"]), str(c["function"]["name"]), c["function"].get("arguments") or ""
            )
            for c in message.get("tool_calls") or ()
        )
        raw_finish = choice.get("finish_reason")
        return Answer(
            text=message.get("content") or message.get("refusal") or "",
            tool_calls=calls,
            raw_finish_reason=raw_finish,
            finish_reason=self.finish_reason(raw_finish, bool(calls)),
            usage=usage_from_openai(data.get("usage")),
            raw_model=data.get("model"),
            provider_request_id=headers.get(self.request_id_header) or data.get("id"),
            usage_reported=bool(data.get("usage")),
        )

    async def decode_stream(
        self, req: ProviderRequest, response: httpx.Response, acc: StreamAssembler
    ) -> AsyncIterator[StreamEvent]:
        async for event in iter_sse(response.aiter_lines()):
            if event.data.strip() == "[DONE]":
                acc.completed = True
                return
            chunk = json.loads(event.data)
            if not isinstance(chunk, dict):
                raise bad_response(self.name, "stream chunk is not a JSON object")
            if chunk.get("error"):
                raise _stream_error(chunk, self.name)
            acc.raw_model = chunk.get("model") or acc.raw_model
            acc.provider_request_id = acc.provider_request_id or chunk.get("id")
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield acc.text(delta["content"])
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") or {}
                    yield acc.tool_delta(
                        int(call.get("index", 0)),
                        call.get("id"),
                        function.get("name"),
                        function.get("arguments") or "",
                    )
                if choice.get("finish_reason"):
                    acc.raw_finish_reason = choice["finish_reason"]
            if chunk.get("usage"):
                yield acc.report_usage(usage_from_openai(chunk["usage"]))
