"""Amazon Bedrock Converse API (`POST {base}/model/{modelId}/converse` and `/converse-stream`), signed
with AWS SigV4 (service `bedrock`). The credential behind `secret_ref` is a JSON object
`{"access_key_id", "secret_access_key", "session_token"?}` (see `AwsCredentials.from_secret`).
ConverseStream answers in the AWS event-stream binary framing, decoded by `eventstream.py`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

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
from .eventstream import EventStreamDecoder
from .http_provider import Answer, HttpProvider, HttpProviderConfig, StreamAssembler, as_int, bad_response
from .sigv4 import AwsCredentials, sign

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

_STREAM_EXCEPTIONS = {
    "throttlingException": ErrorCode.RATE_LIMITED,
    "serviceUnavailableException": ErrorCode.UNAVAILABLE,
    "internalServerException": ErrorCode.UNAVAILABLE,
    "modelStreamErrorException": ErrorCode.UNAVAILABLE,
    "modelTimeoutException": ErrorCode.TIMEOUT,
    "validationException": ErrorCode.BAD_REQUEST,
}


@dataclass(frozen=True, kw_only=True)
class BedrockConfig(HttpProviderConfig):
    """`base_url` empty means `https://bedrock-runtime.{region}.amazonaws.com`."""

    base_url: str = ""
    region: str = "us-east-1"
    signing_service: str = "bedrock"


def usage_from_bedrock(usage: Mapping[str, Any] | None) -> TokenUsage:
    """Converse usage: `inputTokens` excludes `cacheReadInputTokens` and `cacheWriteInputTokens`."""
    usage = usage or {}
    return TokenUsage(
        input_tokens=as_int(usage.get("inputTokens")),
        output_tokens=as_int(usage.get("outputTokens")),
        cached_input_tokens=as_int(usage.get("cacheReadInputTokens")),
        cache_write_input_tokens=as_int(usage.get("cacheWriteInputTokens")),
        cached_included_in_input=False,
        reasoning_included_in_output=True,
    )


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    text = content_text(content)
    return [{"text": text}] if text else []  # Converse rejects empty text blocks


def wire_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(system blocks, Converse messages, whether the history holds tool blocks)."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    has_tool_blocks = False
    for message in messages:
        role = message["role"]
        if role == "system":
            system += _text_blocks(message.get("content"))
            continue
        if role == "tool":
            has_tool_blocks = True
            wire_role = "user"
            blocks = [
                {
                    "toolResult": {
                        "toolUseId": message["tool_call_id"],
                        "content": [{"text": content_text(message.get("content"))}],
                        "status": "error" if message.get("is_error") else "success",
                    }
                }
            ]
        elif role == "assistant":
            wire_role = "assistant"
            calls = message_tool_calls(message)
            has_tool_blocks = has_tool_blocks or bool(calls)
            blocks = _text_blocks(message.get("content")) + [
                {"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in calls
            ]
        else:
            wire_role, blocks = "user", _text_blocks(message.get("content"))
        if out and out[-1]["role"] == wire_role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": wire_role, "content": blocks})
    return system, out, has_tool_blocks


class BedrockProvider(HttpProvider):
    kind = "bedrock"
    FINISH_REASONS = _FINISH
    request_id_header = "x-amzn-requestid"
    config: BedrockConfig

    def __init__(self, config: BedrockConfig, *args: Any, **kwargs: Any) -> None:
        if not config.base_url:
            config = replace(config, base_url=f"https://bedrock-runtime.{config.region}.amazonaws.com")
        super().__init__(config, *args, **kwargs)

    async def credential(self, req: ProviderRequest) -> AwsCredentials | None:
        secret = await self._resolve_secret(req)
        if secret is None:
            return None
        try:
            return AwsCredentials.from_secret(secret)
        except ValueError as exc:
            raise ProviderError(ErrorCode.AUTH_FAILED, f"{self.name}: {exc}", provider=self.name) from None

    def credential_secrets(self, credential: Any) -> tuple[str, ...]:
        if isinstance(credential, AwsCredentials):
            return tuple(s for s in (credential.secret_access_key, credential.session_token) if s)
        return ()

    def body(self, req: ProviderRequest) -> dict[str, Any]:
        system, messages, has_tool_blocks = wire_messages(req.messages)
        body: dict[str, Any] = {"messages": messages}
        if system:
            body["system"] = system
        inference: dict[str, Any] = {}
        if req.max_tokens is not None:
            inference["maxTokens"] = req.max_tokens
        if req.temperature is not None:
            inference["temperature"] = req.temperature
        if req.top_p is not None:
            inference["topP"] = req.top_p
        if req.stop:
            inference["stopSequences"] = list(req.stop)
        if inference:
            body["inferenceConfig"] = inference
        # Converse has no "none" tool choice: drop the tools, unless the history uses them (then
        # Bedrock requires toolConfig) and the model may still call one.
        if req.tools and (req.tool_choice != "none" or has_tool_blocks):
            tools = []
            for tool in req.tools:
                name, description, parameters = tool_spec(tool)
                spec: dict[str, Any] = {"name": name, "inputSchema": {"json": parameters}}
                if description:
                    spec["description"] = description
                tools.append({"toolSpec": spec})
            tool_config: dict[str, Any] = {"tools": tools}
            if req.tool_choice == "auto":
                tool_config["toolChoice"] = {"auto": {}}
            elif req.tool_choice == "required":
                tool_config["toolChoice"] = {"any": {}}
            elif req.tool_choice and req.tool_choice != "none":
                tool_config["toolChoice"] = {"tool": {"name": req.tool_choice}}
            body["toolConfig"] = tool_config
        return body

    def build_request(
        self, req: ProviderRequest, credential: Any, *, stream: bool, timeout: float
    ) -> httpx.Request:
        payload = json.dumps(self.body(req)).encode()
        action = "converse-stream" if stream else "converse"
        request = self.post(
            f"/model/{quote(req.model, safe='')}/{action}",
            payload,
            {
                "content-type": "application/json",
                "accept": "application/vnd.amazon.eventstream" if stream else "application/json",
            },
            timeout,
        )
        if isinstance(credential, AwsCredentials):
            raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
            request.headers.update(
                sign(
                    method=request.method,
                    raw_path=raw_path,
                    raw_query=raw_query,
                    headers={
                        "host": request.headers["host"],
                        "content-type": request.headers["content-type"],
                    },
                    payload=payload,
                    credentials=credential,
                    region=self.config.region,
                    service=self.config.signing_service,
                )
            )
        return request

    def error_detail(self, body: bytes) -> str:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and (data.get("message") or data.get("Message")):
            return str(data.get("message") or data.get("Message"))[:300]
        return super().error_detail(body)

    def parse_answer(self, req: ProviderRequest, data: dict[str, Any], headers: httpx.Headers) -> Answer:
        content = data["output"]["message"]["content"]
        if not isinstance(content, list):
            raise bad_response(self.name, "response has no content list")
        text = "".join(block["text"] for block in content if "text" in block)
        calls = tuple(
            ToolCall(
                str(b["toolUse"]["toolUseId"]),
                str(b["toolUse"]["name"]),
                dict(b["toolUse"].get("input") or {}),
            )
            for b in content
            if "toolUse" in b
        )
        raw_finish = data.get("stopReason")
        return Answer(
            text=text,
            tool_calls=calls,
            raw_finish_reason=raw_finish,
            finish_reason=self.finish_reason(raw_finish, bool(calls)),
            usage=usage_from_bedrock(data.get("usage")),
            raw_model=req.model,  # Converse does not echo the model
            provider_request_id=headers.get(self.request_id_header),
            usage_reported=bool(data.get("usage")),
        )

    async def decode_stream(
        self, req: ProviderRequest, response: httpx.Response, acc: StreamAssembler
    ) -> AsyncIterator[StreamEvent]:
        decoder = EventStreamDecoder()
        tool_index: dict[int, int] = {}
        stopped = False
        acc.raw_model = req.model
        async for chunk in response.aiter_bytes():
            for message in decoder.feed(chunk):
                kind = message.headers.get(":message-type")
                if kind in ("exception", "error"):
                    name = str(
                        message.headers.get(":exception-type") or message.headers.get(":error-code") or kind
                    )
                    try:
                        detail = json.loads(message.payload or b"{}").get("message", "")
                    except ValueError:
                        detail = ""
                    detail = detail or str(message.headers.get(":error-message") or "")
                    code = _STREAM_EXCEPTIONS.get(name, ErrorCode.UNAVAILABLE)
                    raise ProviderError(code, f"{self.name}: {name}: {detail[:300]}", provider=self.name)
                event = message.headers.get(":event-type")
                data = json.loads(message.payload or b"{}")
                if event == "contentBlockStart":
                    tool = (data.get("start") or {}).get("toolUse")
                    if tool:
                        ordinal = tool_index.setdefault(
                            int(data.get("contentBlockIndex", 0)), len(tool_index)
                        )
                        yield acc.tool_delta(ordinal, tool.get("toolUseId"), tool.get("name"), "")
                elif event == "contentBlockDelta":
                    delta = data.get("delta") or {}
                    if "text" in delta:
                        yield acc.text(delta["text"])
                    elif "toolUse" in delta:
                        ordinal = tool_index.setdefault(
                            int(data.get("contentBlockIndex", 0)), len(tool_index)
                        )
                        yield acc.tool_delta(ordinal, None, None, delta["toolUse"].get("input") or "")
                elif event == "messageStop":
                    acc.raw_finish_reason = data.get("stopReason")
                    stopped = True
                elif event == "metadata":
                    if data.get("usage"):
                        yield acc.report_usage(usage_from_bedrock(data["usage"]))
                    if stopped:
                        acc.completed = True
                        return
                # messageStart, contentBlockStop, reasoning deltas: nothing to relay
