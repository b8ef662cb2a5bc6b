"""Bulk ingestion (POST /v1/tenants/{tenant_id}/usage/events): each event validated on its own,
accepted ones produced to Kafka as `usage.UsageRecorded` (acks=all) before the answer; no database
write on this path. A client id maps to a deterministic event id, so a retried id counts once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from ailab_contracts.events.usage import DELTA_METERS, METERS, UsageRecorded

from ..domain.model import AcceptanceRules

# Namespace of event ids derived from (tenant, client event id); fixed forever.
CLIENT_ID_NAMESPACE = uuid.UUID("5b0c6f2e-2f43-4a55-9d7e-6a8f0c1d2e31")
USAGE_RECORDED = "usage.UsageRecorded"


def event_id_for(tenant_id: str, client_id: str) -> uuid.UUID:
    return uuid.uuid5(CLIENT_ID_NAMESPACE, f"{tenant_id}\x1f{client_id}")


class UsagePublisher(Protocol):
    async def publish_all(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) messages and return once every one is acknowledged (acks=all)."""
        ...


@dataclass(frozen=True)
class ItemResult:
    index: int
    client_event_id: str | None
    event_id: str | None
    status: str  # accepted | rejected
    reason: str | None = None
    message: str | None = None


def _reason(errors: list[dict[str, Any]], item: dict[str, Any]) -> tuple[str, str]:
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    if loc == "meter":
        return "unknown_meter", f"unknown meter {item.get('meter')!r}; known: {', '.join(METERS)}"
    if "cannot be negative" in str(first.get("msg")):
        return "negative_quantity", str(first.get("msg")).removeprefix("Value error, ")
    return "invalid_event", "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or 'event'}: {e.get('msg')}" for e in errors[:5]
    )


def validate_item(
    index: int,
    item: Any,
    *,
    tenant_id: str,
    principal: str,
    rules: AcceptanceRules,
    now: datetime,
) -> tuple[ItemResult, UsageRecorded | None]:
    if not isinstance(item, dict):
        return ItemResult(
            index, None, None, "rejected", "invalid_event", "each event must be an object"
        ), None
    client_id = item.get("event_id")
    if client_id is not None and (not isinstance(client_id, str) or not 1 <= len(client_id) <= 200):
        return (
            ItemResult(index, None, None, "rejected", "invalid_event", "event_id: 1-200 characters"),
            None,
        )

    def rejected(reason: str, message: str) -> tuple[ItemResult, None]:
        return ItemResult(index, client_id, None, "rejected", reason, message), None

    if item.get("tenant_id") not in (None, tenant_id):
        return rejected("tenant_mismatch", f"tenant_id {item.get('tenant_id')!r} is not {tenant_id!r}")
    meter = item.get("meter")
    if isinstance(meter, str) and meter not in METERS:
        return rejected("unknown_meter", f"unknown meter {meter!r}; known: {', '.join(METERS)}")
    body = {k: v for k, v in item.items() if k != "event_id"}
    body["tenant_id"] = tenant_id
    body.setdefault("user_id", principal)
    body.setdefault("provider", "internal")
    body.setdefault("request_id", client_id or f"bulk-{index}")
    body.setdefault("timestamp", now.isoformat())
    try:
        event = UsageRecorded.model_validate(body)
    except ValidationError as exc:
        return rejected(*_reason(exc.errors(include_url=False), item))
    if event.quantity < 0 and event.meter not in DELTA_METERS:
        return rejected("negative_quantity", f"quantity of meter {event.meter} cannot be negative")
    problem = rules.timing_problem(event.timestamp, now)
    if problem == "timestamp_in_future":
        return rejected(problem, f"timestamp is more than {rules.future_tolerance} ahead of the server clock")
    if problem == "timestamp_too_old":
        return rejected(
            problem, f"timestamp is older than the late-arrival window ({rules.late_arrival_window})"
        )
    event_id = event_id_for(tenant_id, client_id) if client_id else uuid.uuid4()
    return ItemResult(index, client_id, str(event_id), "accepted"), event


def envelope_bytes(
    event: UsageRecorded, event_id: str, client_id: str | None, *, now: datetime, request_id: str | None
) -> bytes:
    """The wire envelope of one accepted event (same shape EventEnvelope.to_wire() gives)."""
    envelope = {
        "event_id": event_id,
        "event_type": USAGE_RECORDED,
        "schema_version": 1,
        "stream_id": f"usage-bulk:{event.tenant_id}:{client_id or event_id}",
        "stream_version": 1,
        "tenant_id": event.tenant_id,
        "occurred_at": now.isoformat(),
        "producer": "usage-meter",
        "correlation_id": request_id,
        "causation_id": request_id,
        "payload": event.model_dump(mode="json"),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


async def ingest_bulk(
    items: Sequence[Any],
    *,
    tenant_id: str,
    principal: str,
    rules: AcceptanceRules,
    publisher: UsagePublisher,
    request_id: str | None = None,
    now: datetime | None = None,
) -> list[ItemResult]:
    now = now or datetime.now(UTC)
    results: list[ItemResult] = []
    messages: list[tuple[bytes, bytes]] = []
    sent: set[str] = set()
    key = tenant_id.encode()
    for index, item in enumerate(items):
        result, event = validate_item(
            index, item, tenant_id=tenant_id, principal=principal, rules=rules, now=now
        )
        results.append(result)
        if event is not None and result.event_id is not None and result.event_id not in sent:
            sent.add(result.event_id)  # the same client id twice in one request is sent once
            messages.append(
                (
                    key,
                    envelope_bytes(
                        event, result.event_id, result.client_event_id, now=now, request_id=request_id
                    ),
                )
            )
    if messages:
        await publisher.publish_all(messages)
    return results
