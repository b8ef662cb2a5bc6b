"""Server-sent events (the WHATWG `text/event-stream` format) decoded from an HTTP body's lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    event: str | None
    data: str


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """Events from body lines (as `httpx.Response.aiter_lines` yields them, without line ends).

    Comment lines (`: keep-alive`) and `id:`/`retry:` fields are skipped; several `data:` lines join
    with "\\n". An event still open when the body ends is dispatched too: some OpenAI-compatible
    servers omit the blank line after the last `data: [DONE]`."""
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SseEvent(event, "\n".join(data))
