"""Anthropic Messages wire format for the fake server: `message` bodies, error bodies, and the SSE
event sequence (`message_start` … `message_stop`, with `ping`) exactly as the API sends it."""

from __future__ import annotations

import json
from typing import Any

from fakes.provider_http import Recorded, Reply, word_chunks

MODEL = "claude-sonnet-4-20250514"


def usage(
    input_tokens: int, output_tokens: int, *, cache_read: int = 0, cache_creation: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(
    text: str | None = "Hello!",
    *,
    tool_uses: list[tuple[str, str, dict[str, Any]]] | None = None,
    stop_reason: str | None = None,
    usage_block: dict[str, Any] | None = None,
    model: str = MODEL,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [
        {"type": "tool_use", "id": tid, "name": name, "input": args} for tid, name, args in tool_uses or []
    ]
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "stop_sequence": None,
        "usage": usage_block or usage(12, 6),
    }


def event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def stream_events(
    parts: list[str],
    *,
    tool_uses: list[tuple[str, str, list[str]]] | None = None,
    stop_reason: str | None = None,
    usage_block: dict[str, Any] | None = None,
    model: str = MODEL,
) -> list[bytes]:
    """`message_start` (input usage, output_tokens 1), `ping`, text block, tool_use blocks with
    `input_json_delta`s, `message_delta` (stop reason and final output_tokens), `message_stop`."""
    final = usage_block or usage(12, 6)
    start_usage = {**final, "output_tokens": 1}
    out = [
        event(
            "message_start",
            {
                "message": {
                    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                }
            },
        ),
        event("ping", {}),
    ]
    index = 0
    if parts:
        out.append(
            event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
        )
        for part in parts:
            out.append(
                event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": part}})
            )
        out.append(event("content_block_stop", {"index": index}))
        index += 1
    for tid, name, pieces in tool_uses or []:
        block = {"type": "tool_use", "id": tid, "name": name, "input": {}}
        out.append(event("content_block_start", {"index": index, "content_block": block}))
        out.append(
            event(
                "content_block_delta",
                {"index": index, "delta": {"type": "input_json_delta", "partial_json": ""}},
            )
        )
        for piece in pieces:
            out.append(
                event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}},
                )
            )
        out.append(event("content_block_stop", {"index": index}))
        index += 1
    stop = stop_reason or ("tool_use" if tool_uses else "end_turn")
    out.append(
        event(
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": final["output_tokens"]},
            },
        )
    )
    out.append(event("message_stop", {}))
    return out


def stream_reply(chunks: list[bytes], **kw: Any) -> Reply:
    return Reply(
        headers={"content-type": "text/event-stream; charset=utf-8", "request-id": "req_stream_1"},
        chunks=chunks,
        **kw,
    )


def error(status: int, message: str, kind: str, *, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return Reply.json(body, status, {"request-id": "req_err", **(headers or {})}, **kw)


def echo(record: Recorded) -> Reply:
    body = record.json()
    last = body["messages"][-1]["content"]
    if not isinstance(last, str):  # text blocks, or tool_result blocks with string content
        last = " ".join(
            b.get("text") or (b.get("content") if isinstance(b.get("content"), str) else "") for b in last
        )
    text = f"echo: {last}"
    data = message(text, usage_block=usage(len(last.split()), len(text.split())))
    if body.get("stream"):
        return stream_reply(stream_events(word_chunks(text), usage_block=data["usage"]))
    return Reply.json(data, headers={"request-id": "req_echo"})
