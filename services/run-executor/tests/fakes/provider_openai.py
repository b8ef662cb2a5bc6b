"""OpenAI chat-completions wire format for the fake server: bodies and SSE exactly as the API sends
them (`chat.completion`, `chat.completion.chunk`, the usage-only last chunk, `data: [DONE]`)."""

from __future__ import annotations

import json
from typing import Any

from fakes.provider_http import Recorded, Reply, word_chunks

MODEL = "gpt-4o-mini-2024-07-18"
FINGERPRINT = "fp_0ba0d124f1"


def usage(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(
    text: str | None = "Hello!",
    *,
    tool_calls: list[tuple[str, str, dict[str, Any]]] | None = None,
    finish_reason: str | None = None,
    usage_block: dict[str, Any] | None = None,
    model: str = MODEL,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for cid, name, args in tool_calls
        ]
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": usage_block or usage(19, 10),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def sse(obj: Any) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def _chunk(
    choices: list[dict[str, Any]], *, model: str, usage_block: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MHFSt3pXUUQ4A1lJHuDcOSNzWyH",
        "object": "chat.completion.chunk",
        "created": 1741570285,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": usage_block,
    }


def stream_chunks(
    parts: list[str],
    *,
    tool_calls: list[tuple[str, str, list[str]]] | None = None,
    finish_reason: str | None = None,
    usage_block: dict[str, Any] | None = None,
    model: str = MODEL,
) -> list[bytes]:
    """SSE events: role chunk, one chunk per text part, tool-call chunks (id+name, then argument
    pieces), the finish chunk, the usage chunk (choices empty), `[DONE]`."""
    out = [
        sse(
            _chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                model=model,
            )
        )
    ]
    for part in parts:
        out.append(
            sse(
                _chunk(
                    [{"index": 0, "delta": {"content": part}, "logprobs": None, "finish_reason": None}],
                    model=model,
                )
            )
        )
    for index, (cid, name, pieces) in enumerate(tool_calls or []):
        head = {"index": index, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}
        out.append(
            sse(
                _chunk(
                    [{"index": 0, "delta": {"tool_calls": [head]}, "logprobs": None, "finish_reason": None}],
                    model=model,
                )
            )
        )
        for piece in pieces:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            out.append(
                sse(
                    _chunk(
                        [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}], model=model
                    )
                )
            )
    finish = finish_reason or ("tool_calls" if tool_calls else "stop")
    out.append(
        sse(_chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}], model=model))
    )
    out.append(sse(_chunk([], model=model, usage_block=usage_block or usage(19, 10))))
    out.append(b"data: [DONE]\n\n")
    return out


def stream_reply(chunks: list[bytes], **kw: Any) -> Reply:
    return Reply(
        headers={"content-type": "text/event-stream; charset=utf-8", "x-request-id": "req_stream_1"},
        chunks=chunks,
        **kw,
    )


def error(status: int, message: str, kind: str, *, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return Reply.json(body, status, {"x-request-id": "req_err", **(headers or {})}, **kw)


def echo(record: Recorded) -> Reply:
    """Default answer: echo the last message, counting whitespace words as tokens."""
    body = record.json()
    last = body["messages"][-1].get("content") or ""
    prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    text = f"echo: {last}"
    data = completion(text, usage_block=usage(prompt, len(text.split())))
    if body.get("stream"):
        return stream_reply(stream_chunks(word_chunks(text), usage_block=data["usage"]))
    return Reply.json(data, headers={"x-request-id": "req_echo"})
