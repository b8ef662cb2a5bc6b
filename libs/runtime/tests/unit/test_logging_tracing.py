"""JSON log lines carry request, tenant and trace ids; trace context survives HTTP and Kafka headers."""

import json
import logging

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from ailab_runtime.context import request_id_var, tenant_id_var
from ailab_runtime.logging import JsonFormatter
from ailab_runtime.tracing import (
    configure_tracing,
    context_from_http,
    context_from_kafka,
    inject_http_headers,
    kafka_headers,
    tracer,
)

pytestmark = pytest.mark.unit


def test_json_log_line_has_context_and_redacts_secrets() -> None:
    configure_tracing("test")
    request_id_var.set("req-1")
    tenant_id_var.set("acme")
    with tracer("t").start_as_current_span("op") as span:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        record.fields = {"password": "hunter2", "path": "/v1/x"}  # type: ignore[attr-defined]
        line = json.loads(JsonFormatter("svc").format(record))
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert line["msg"] == "hello world" and line["service"] == "svc"
    assert (line["request_id"], line["tenant_id"], line["trace_id"]) == ("req-1", "acme", trace_id)
    assert line["password"] == "[redacted]" and line["path"] == "/v1/x"


def test_trace_context_round_trips_http_and_kafka_headers() -> None:
    configure_tracing("test")
    with tracer("t").start_as_current_span("parent") as span:
        http = inject_http_headers({})
        kafka = kafka_headers({"event_type": "x"})
        trace_id = span.get_span_context().trace_id
    assert "traceparent" in http and ("event_type", b"x") in kafka
    for ctx in (context_from_http(http), context_from_kafka(kafka)):
        token = otel_context.attach(ctx)
        try:
            with tracer("t").start_as_current_span("child") as child:
                assert child.get_span_context().trace_id == trace_id
        finally:
            otel_context.detach(token)
    assert trace.get_current_span().get_span_context().is_valid is False
