"""OpenTelemetry setup and W3C trace-context propagation over HTTP headers and Kafka headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

_configured = False


def configure_tracing(service: str) -> None:
    """Install an SDK tracer provider (ids are real; exporters can be added by configuration)."""
    global _configured
    if _configured:
        return
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service})))
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_http_headers(headers: dict[str, str]) -> dict[str, str]:
    inject(headers)
    return headers


def context_from_http(headers: Mapping[str, str]) -> otel_context.Context:
    return extract(dict(headers))


def kafka_headers(extra: Mapping[str, str] | None = None) -> list[tuple[str, bytes]]:
    carrier: dict[str, str] = {}
    inject(carrier)
    carrier.update(extra or {})
    return [(k, v.encode()) for k, v in carrier.items()]


def context_from_kafka(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    carrier = {k: v.decode(errors="replace") for k, v in (headers or [])}
    return extract(carrier)


def current_trace_id() -> str | None:
    span = trace.get_current_span().get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else None
