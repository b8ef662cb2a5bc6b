"""The one interface between the run executor and LLM providers.

A `ProviderRequest` goes in; a `ProviderResponse` (from `complete`) or a stream of `StreamEvent`s
ending in `StreamEnd` (from `stream`) comes out; anything that goes wrong is a `ProviderError` with a
stable `code`. Credentials come from a `SecretResolver` port and never appear in messages or logs.

Messages use one provider-neutral shape (adapters translate it to each wire format)::

    {"role": "system" | "user" | "assistant" | "tool",
     "content": str | None,
     "tool_calls": [{"id": str, "name": str, "arguments": dict}],   # assistant only, optional
     "tool_call_id": str}                                            # tool only

Tools are JSON-Schema function specs, either `{"name", "description", "parameters"}` or the OpenAI
form `{"type": "function", "function": {...}}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

ROLES = frozenset({"system", "user", "assistant", "tool"})

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "other"]


class ErrorCode(StrEnum):
    """Stable error codes of provider calls (also compared as plain strings)."""

    RATE_LIMITED = "provider_rate_limited"
    UNAVAILABLE = "provider_unavailable"
    TIMEOUT = "provider_timeout"
    BAD_RESPONSE = "provider_bad_response"
    AUTH_FAILED = "provider_auth_failed"
    BAD_REQUEST = "provider_bad_request"
    CIRCUIT_OPEN = "provider_circuit_open"
    CANCELLED = "provider_cancelled"


# Codes a caller may sensibly retry later (the adapters already retried what the policy allows).
_RETRYABLE = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.CIRCUIT_OPEN}
)


@dataclass(frozen=True)
class TokenUsage:
    """Token counts exactly as the provider reported them, plus how to read them.

    Providers disagree on whether cached prompt tokens are part of the input count: OpenAI's
    `prompt_tokens` includes `cached_tokens` (`cached_included_in_input=True`), Anthropic's and
    Bedrock's `input_tokens`/`inputTokens` exclude cache reads and writes (`False`). Reasoning tokens
    (OpenAI `reasoning_tokens`) are part of `output_tokens`. Use `total_input_tokens` and
    `total_output_tokens` for the `tokens_in`/`tokens_out` meters; pricing reads the raw fields.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_input_tokens: int = 0
    cached_included_in_input: bool = False
    reasoning_included_in_output: bool = True

    @property
    def total_input_tokens(self) -> int:
        """Every prompt token the provider processed (fresh, cache reads and cache writes)."""
        if self.cached_included_in_input:
            return self.input_tokens
        return self.input_tokens + self.cached_input_tokens + self.cache_write_input_tokens

    @property
    def total_output_tokens(self) -> int:
        """Every generated token (visible text, tool calls and reasoning)."""
        if self.reasoning_included_in_output:
            return self.output_tokens
        return self.output_tokens + self.reasoning_tokens

    def plus(self, other: TokenUsage) -> TokenUsage:
        """Sum of two usages of the same provider convention (e.g. the steps of one run)."""
        if (self.cached_included_in_input, self.reasoning_included_in_output) != (
            other.cached_included_in_input,
            other.reasoning_included_in_output,
        ):
            raise ValueError("cannot add usages reported under different token conventions")
        return replace(
            self,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_write_input_tokens=self.cache_write_input_tokens + other.cache_write_input_tokens,
        )


@dataclass(frozen=True)
class ToolCall:
    """A function call requested by the model. `arguments` is the decoded JSON object; when the
    model produced text that is not a JSON object, `arguments` is `{}` and `raw_arguments` keeps it."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str | None = None

    def as_message_part(self) -> dict[str, Any]:
        """The neutral message form, to put back into `messages[...]["tool_calls"]`."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


def tool_call_from_json(call_id: str, name: str, raw: str) -> ToolCall:
    """A ToolCall from the JSON text the model streamed or returned (tolerates invalid JSON)."""
    try:
        decoded = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return ToolCall(call_id, name, {}, raw)
    if not isinstance(decoded, dict):
        return ToolCall(call_id, name, {}, raw)
    return ToolCall(call_id, name, decoded)


def tool_spec(tool: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(name, description, JSON-Schema parameters) of a tool given in either accepted form."""
    spec = tool.get("function") if tool.get("type") == "function" and "function" in tool else tool
    if not isinstance(spec, Mapping) or not spec.get("name"):
        raise ProviderError(ErrorCode.BAD_REQUEST, "every tool needs a name")
    parameters = spec.get("parameters") or spec.get("input_schema") or {"type": "object", "properties": {}}
    return str(spec["name"]), spec.get("description"), dict(parameters)


def message_tool_calls(message: Mapping[str, Any]) -> list[ToolCall]:
    """The tool calls of an assistant message (dicts or ToolCall objects; arguments dict or JSON)."""
    calls: list[ToolCall] = []
    for item in message.get("tool_calls") or ():
        if isinstance(item, ToolCall):
            calls.append(item)
            continue
        arguments = item.get("arguments", {})
        if isinstance(arguments, str):
            calls.append(tool_call_from_json(str(item["id"]), str(item["name"]), arguments))
        else:
            calls.append(ToolCall(str(item["id"]), str(item["name"]), dict(arguments or {})))
    return calls


def content_text(content: Any) -> str:
    """The text of a message content: a string, None, or a list of parts with `text`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif isinstance(part, str):
            parts.append(part)
    return "".join(parts)


@dataclass(frozen=True, kw_only=True)
class ProviderRequest:
    """One chat call. `timeout_s` bounds one attempt (None: the adapter's default); `tenant_id` and
    `secret_ref` select the credential (`secret_ref` None: the adapter's configured default);
    `metadata` is opaque context (run id, user id ...) that adapters do not send, except where noted.
    `stream` records the caller's choice; `ProviderRegistry.execute` honours it."""

    provider: str
    model: str
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | None = None  # "auto" | "none" | "required" | a tool name
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: Sequence[str] | None = None
    stream: bool = False
    timeout_s: float | None = None
    tenant_id: str | None = None
    secret_ref: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise `provider_bad_request` for a request no provider could accept."""
        if not self.model:
            raise ProviderError(ErrorCode.BAD_REQUEST, "model is required", provider=self.provider)
        if not self.messages:
            raise ProviderError(ErrorCode.BAD_REQUEST, "messages must not be empty", provider=self.provider)
        for index, message in enumerate(self.messages):
            role = message.get("role")
            if role not in ROLES:
                raise ProviderError(
                    ErrorCode.BAD_REQUEST,
                    f"messages[{index}].role {role!r} is not one of {sorted(ROLES)}",
                    provider=self.provider,
                )
            if role == "tool" and not message.get("tool_call_id"):
                raise ProviderError(
                    ErrorCode.BAD_REQUEST,
                    f"messages[{index}] (role tool) needs tool_call_id",
                    provider=self.provider,
                )
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ProviderError(ErrorCode.BAD_REQUEST, "max_tokens must be positive", provider=self.provider)
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ProviderError(ErrorCode.BAD_REQUEST, "timeout_s must be positive", provider=self.provider)


@dataclass(frozen=True, kw_only=True)
class ProviderResponse:
    """A finished answer. `finish_reason` is normalised (`raw_finish_reason` keeps the provider's word);
    `latency_ms` is the wall time of the whole call including retries (`attempts` of them). When
    `usage_reported` is False the zero usage is not a measurement: meter it as unknown."""

    provider: str
    model: str
    raw_model: str | None
    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    raw_finish_reason: str | None
    usage: TokenUsage
    latency_ms: int
    provider_request_id: str | None
    attempts: int = 1
    time_to_first_token_ms: int | None = None  # streams only
    usage_reported: bool = True  # False: the provider sent no usage (some OpenAI-compatible servers)


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call: the first delta of an `index` carries `id` and `name`."""

    index: int
    id: str | None
    name: str | None
    arguments_delta: str


@dataclass(frozen=True)
class UsageUpdate:
    """Usage reported so far (cumulative), as soon as the provider tells it (e.g. Anthropic's
    `message_start`). Keep the last one: it is what a cancelled stream has already cost."""

    usage: TokenUsage


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a successful stream: the assembled response, with final usage."""

    response: ProviderResponse

    @property
    def usage(self) -> TokenUsage:
        return self.response.usage

    @property
    def finish_reason(self) -> FinishReason:
        return self.response.finish_reason


StreamEvent = TextDelta | ToolCallDelta | UsageUpdate | StreamEnd


class ProviderError(Exception):
    """A failed provider call. `code` is one of `ErrorCode`; `status` the HTTP status if any;
    `retryable` whether trying again later may succeed; `usage_so_far` the tokens the provider had
    reported before the failure (streams), so spent tokens are never lost. Messages never contain
    credentials."""

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool | None = None,
        usage_so_far: TokenUsage | None = None,
        provider: str | None = None,
        retry_after_s: float | None = None,
        provider_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.status = status
        self.retryable = self.code in _RETRYABLE if retryable is None else retryable
        self.usage_so_far = usage_so_far
        self.provider = provider
        self.retry_after_s = retry_after_s
        self.provider_request_id = provider_request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for run events and API errors); `usage_so_far` as raw counts."""
        usage = self.usage_so_far
        return {
            "code": self.code.value,
            "message": self.message,
            "status": self.status,
            "retryable": self.retryable,
            "provider": self.provider,
            "provider_request_id": self.provider_request_id,
            "usage_so_far": None
            if usage is None
            else {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cached_input_tokens": usage.cached_input_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
                "cache_write_input_tokens": usage.cache_write_input_tokens,
                "total_input_tokens": usage.total_input_tokens,
                "total_output_tokens": usage.total_output_tokens,
            },
        }

    def __repr__(self) -> str:
        return f"ProviderError(code={self.code.value!r}, status={self.status!r}, message={self.message!r})"


class SecretResolver(Protocol):
    """Port: the credential stored under `secret_ref` for `tenant_id` (raise KeyError if none)."""

    async def resolve(self, tenant_id: str | None, secret_ref: str) -> str: ...


@runtime_checkable
class Provider(Protocol):
    """An LLM provider. Use streams as `async with contextlib.aclosing(p.stream(req)) as events:` so
    that leaving the loop early closes the HTTP request at once."""

    name: str

    async def complete(self, req: ProviderRequest) -> ProviderResponse: ...

    def stream(self, req: ProviderRequest) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...


async def collect(events: AsyncIterator[StreamEvent]) -> ProviderResponse:
    """Drain a stream and return its final response (raises `provider_bad_response` if it has none)."""
    final: ProviderResponse | None = None
    async for event in events:
        if isinstance(event, StreamEnd):
            final = event.response
    if final is None:
        raise ProviderError(ErrorCode.BAD_RESPONSE, "stream ended without a final event")
    return final
