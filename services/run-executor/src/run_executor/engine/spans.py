"""Spans of a run, OpenTelemetry-compatible: a 32-hex trace id, 16-hex span ids, parents, start/end,
duration, attributes, events, and status `ok`, `error` or `timeout` with `error {type, message}`.

A span is emitted once, when it ends (insert-only storage); the run's root span ends last.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..domain.values import storable_preview

SpanStatus = str  # "ok" | "error" | "timeout"


def new_trace_id() -> str:
    while True:
        value = secrets.token_hex(16)
        if int(value, 16):
            return value


def new_span_id() -> str:
    while True:
        value = secrets.token_hex(8)
        if int(value, 16):
            return value


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    operation_name: str
    start_time: datetime
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    input: Any = None
    output: Any = None
    end_time: datetime | None = None
    duration_ms: float | None = None
    status: SpanStatus = "ok"
    error: dict[str, str] | None = None
    opened: int = 0  # order in which the trace's spans were started (ties at equal start times)
    _started: float = field(default_factory=time.monotonic, repr=False)

    def set(self, **attributes: Any) -> None:
        self.attributes.update({k: _scalar(v) for k, v in attributes.items()})

    def event(self, name: str, **attributes: Any) -> None:
        self.events.append(
            {
                "name": name,
                "time": datetime.now(UTC),
                "attributes": {k: _scalar(v) for k, v in attributes.items()},
            }
        )

    def as_doc(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "operation_name": self.operation_name,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "duration_ms": self.duration_ms,
            "attributes": dict(self.attributes),
            "tags": dict(self.tags),
            "events": list(self.events),
            "status": self.status,
            "error": self.error,
            "input": self.input,
            "output": self.output,
        }


SpanSink = Callable[[Span], Awaitable[None]]


class SpanRecorder:
    """Opens spans of one trace and hands each finished span to `sink`."""

    def __init__(self, trace_id: str, base_attributes: Mapping[str, Any], sink: SpanSink) -> None:
        self.trace_id = trace_id
        self._base = {k: _scalar(v) for k, v in base_attributes.items()}
        self._sink = sink
        self.spans_emitted = 0
        self._opened = 0

    def start(
        self,
        operation_name: str,
        parent: Span | None,
        *,
        input: Any = None,
        span_id: str | None = None,
        kind: str = "internal",
        **attributes: Any,
    ) -> Span:
        """`kind` is the OpenTelemetry span kind (`client` for calls leaving the process)."""
        span = Span(
            trace_id=self.trace_id,
            span_id=span_id or new_span_id(),
            parent_span_id=parent.span_id if parent is not None else None,
            operation_name=operation_name,
            start_time=datetime.now(UTC),
            attributes=dict(self._base),
            tags={"service_name": "run-executor", "span_kind": kind},
            input=storable_preview(input),
            opened=self._opened,
        )
        self._opened += 1
        span.set(**attributes)
        return span

    async def end(
        self,
        span: Span,
        *,
        status: SpanStatus = "ok",
        error_type: str | None = None,
        error_message: str | None = None,
        output: Any = None,
    ) -> None:
        span.end_time = datetime.now(UTC)
        span.duration_ms = round((time.monotonic() - span._started) * 1000, 3)
        span.status = status
        if error_type is not None:
            span.error = {"type": error_type, "message": (error_message or "")[:4000]}
        if output is not None:
            span.output = storable_preview(output)
        self.spans_emitted += 1
        await self._sink(span)
