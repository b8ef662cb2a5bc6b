"""The built-in `local` provider: deterministic, offline, free. It lets the whole system run (and be
tested) without any LLM.

Answers:
- the last message is a tool result -> `"tool <name> returned: <content>"`;
- tools are offered and the last user message names one of them (as a word), or `tool_choice` is
  "required" or a tool name -> a call of that tool, whose arguments are the first JSON object found
  in the message (else `{}`); `tool_choice="none"` never calls;
- otherwise `template` filled with `{last_user}` (default `"echo: {last_user}"`).
`max_tokens` truncates the answer (finish `length`); a `stop` string cuts it (finish `stop`).

Tokens are whitespace-separated words: input = the words of every message content and tool-call
argument JSON; output = the words of the answer (or of `name + arguments JSON` for a tool call).
Streams yield one word per `TextDelta` (words after the first keep their leading space).

Knobs for tests: `latency_s` before answering, `chunk_delay_s` between streamed words, and per
request `metadata["local_latency_s"]`, `metadata["local_chunk_delay_s"]`, and
`metadata["local_error"]` (an `ErrorCode` value to raise instead of answering).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from .base import (
    ErrorCode,
    FinishReason,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamEnd,
    StreamEvent,
    TextDelta,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    UsageUpdate,
    content_text,
    message_tool_calls,
    tool_spec,
)


@dataclass(frozen=True, kw_only=True)
class LocalProviderConfig:
    name: str = "local"
    template: str = "echo: {last_user}"
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0


def count_tokens(text: str) -> int:
    """The local provider's tokenizer: whitespace-separated words."""
    return len(text.split())


def _first_json_object(text: str) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text[match.start() :])
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


@dataclass(frozen=True)
class _Plan:
    text: str
    tool_call: ToolCall | None
    finish_reason: FinishReason
    usage: TokenUsage


class LocalProvider:
    """Implements `Provider` without any network."""

    def __init__(self, config: LocalProviderConfig | None = None) -> None:
        self.config = config or LocalProviderConfig()
        self.name = self.config.name

    async def aclose(self) -> None:
        return None

    def _input_tokens(self, req: ProviderRequest) -> int:
        total = 0
        for message in req.messages:
            total += count_tokens(content_text(message.get("content")))
            for call in message_tool_calls(message):
                total += count_tokens(call.name + " " + json.dumps(call.arguments, sort_keys=True))
        return total

    def _tool_call(self, req: ProviderRequest, last: Mapping[str, Any]) -> ToolCall | None:
        if not req.tools or req.tool_choice == "none" or last.get("role") != "user":
            return None
        names = [tool_spec(t)[0] for t in req.tools]
        text = content_text(last.get("content"))
        chosen: str | None = None
        if req.tool_choice and req.tool_choice not in ("auto", "required"):
            chosen = req.tool_choice if req.tool_choice in names else None
        if chosen is None:
            chosen = next((n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)), None)
        if chosen is None and req.tool_choice == "required":
            chosen = names[0]
        if chosen is None:
            return None
        arguments = _first_json_object(text)
        digest = hashlib.sha256(
            f"{len(req.messages)}:{chosen}:{json.dumps(arguments, sort_keys=True)}".encode()
        ).hexdigest()
        return ToolCall(f"call_local_{digest[:12]}", chosen, arguments)

    def _plan(self, req: ProviderRequest) -> _Plan:
        req.validate()
        error = req.metadata.get("local_error")
        if error:
            raise ProviderError(
                ErrorCode(error), f"{self.name}: injected {error}", provider=self.name, status=None
            )
        last = req.messages[-1]
        input_tokens = self._input_tokens(req)
        call = self._tool_call(req, last)
        if call is not None:
            output = count_tokens(call.name + " " + json.dumps(call.arguments, sort_keys=True))
            return _Plan("", call, "tool_calls", TokenUsage(input_tokens=input_tokens, output_tokens=output))
        if last.get("role") == "tool":
            names = {c.id: c.name for m in req.messages for c in message_tool_calls(m)}
            name = names.get(str(last.get("tool_call_id")), "tool")
            text = f"tool {name} returned: {content_text(last.get('content'))}"
        else:
            last_user = next(
                (content_text(m.get("content")) for m in reversed(req.messages) if m.get("role") == "user"),
                "",
            )
            text = self.config.template.format(last_user=last_user)
        finish: FinishReason = "stop"
        for stop in req.stop or ():
            if stop and stop in text:
                text = text[: text.index(stop)]
        words = text.split()
        if req.max_tokens is not None and len(words) > req.max_tokens:
            text = " ".join(words[: req.max_tokens])
            finish = "length"
        return _Plan(
            text, None, finish, TokenUsage(input_tokens=input_tokens, output_tokens=count_tokens(text))
        )

    def _delay(self, req: ProviderRequest, key: str, default: float) -> float:
        return float(req.metadata.get(key, default))

    def _response(
        self, req: ProviderRequest, plan: _Plan, started: float, first: float | None
    ) -> ProviderResponse:
        now = time.monotonic()
        digest = hashlib.sha256(json.dumps([dict(m) for m in req.messages], default=str).encode()).hexdigest()
        return ProviderResponse(
            provider=self.name,
            model=req.model,
            raw_model=req.model,
            text=plan.text,
            tool_calls=(plan.tool_call,) if plan.tool_call else (),
            finish_reason=plan.finish_reason,
            raw_finish_reason=plan.finish_reason,
            usage=plan.usage,
            latency_ms=int((now - started) * 1000),
            provider_request_id=f"local-{digest[:16]}",
            attempts=1,
            time_to_first_token_ms=int((first - started) * 1000) if first is not None else None,
        )

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        started = time.monotonic()
        plan = self._plan(req)
        delay = self._delay(req, "local_latency_s", self.config.latency_s)
        if delay > 0:
            await asyncio.sleep(delay)
        return self._response(req, plan, started, None)

    async def stream(self, req: ProviderRequest) -> AsyncIterator[StreamEvent]:
        started = time.monotonic()
        plan = self._plan(req)
        delay = self._delay(req, "local_latency_s", self.config.latency_s)
        chunk_delay = self._delay(req, "local_chunk_delay_s", self.config.chunk_delay_s)
        if delay > 0:
            await asyncio.sleep(delay)
        yield UsageUpdate(TokenUsage(input_tokens=plan.usage.input_tokens))
        first: float | None = None
        if plan.tool_call is not None:
            first = time.monotonic()
            call = plan.tool_call
            yield ToolCallDelta(0, call.id, call.name, json.dumps(call.arguments, sort_keys=True))
        else:
            for index, word in enumerate(plan.text.split(" ") if plan.text else []):
                if index and chunk_delay > 0:
                    await asyncio.sleep(chunk_delay)
                first = first or time.monotonic()
                yield TextDelta(word if index == 0 else " " + word)
        yield UsageUpdate(plan.usage)
        yield StreamEnd(self._response(req, plan, started, first))
