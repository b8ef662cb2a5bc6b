"""JSON logs, one object per line, with request id, tenant id and trace id from the current context."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from .context import request_id_var, tenant_id_var, user_id_var

_REDACT = ("password", "secret", "token", "authorization", "api_key", "apikey")


def redact(data: dict[str, Any]) -> dict[str, Any]:
    """Copy of `data` with values of secret-looking keys replaced (secrets are never logged)."""
    return {k: ("[redacted]" if any(s in k.lower() for s in _REDACT) else v) for k, v in data.items()}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        span = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
            "tenant_id": tenant_id_var.get(),
            "user_id": user_id_var.get(),
            "trace_id": format(span.trace_id, "032x") if span.is_valid else None,
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update({k: v for k, v in redact(extra).items() if v is not None or k not in entry})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "pymongo", "httpx", "uvicorn.access", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
