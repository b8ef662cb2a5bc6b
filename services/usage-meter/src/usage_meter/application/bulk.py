"""Bulk ingestion (POST /v1/tenants/{tenant_id}/usage/events): each event validated on its own,
accepted ones produced to Kafka together as `usage.UsageBatchRecorded` records (one per request, more
only when it would exceed the size a Kafka record may have; acks=all) before the answer; no database
write on this path. A client id maps to a deterministic event id, so a retried id counts once.

A hot path (the benchmark wants 20,000 events/s on two cores), hence the hand-rolled uuid texts, one
validation call per request (of the canonical form, without models, when every event is in it), and
records written from the events as sent instead of re-serialized."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple, NotRequired, Protocol

import pydantic_core
from pydantic import AwareDatetime, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from ailab_contracts.events.usage import (
    CANONICAL_BATCH_EVENTS,
    CANONICAL_DECIMAL_PATTERN,
    MAX_BATCH_EVENTS,
    METERS,
    CanonicalUsageFields,
    UsageBatchEvent,
    UsageProvider,
    canonical_amounts,
    decimal_text,
)

from ..domain.model import AcceptanceRules, TimingBounds

# Namespace of event ids derived from (tenant, client event id); fixed forever.
CLIENT_ID_NAMESPACE = uuid.UUID("5b0c6f2e-2f43-4a55-9d7e-6a8f0c1d2e31")
USAGE_BATCH_RECORDED = "usage.UsageBatchRecorded"
USAGE_BATCH_RECORDED_VERSION = 1
# Kafka refuses records over 1 MiB by default (broker message.max.bytes, aiokafka max_request_size);
# the rest is left for the key, headers and record-batch framing.
MAX_RECORD_BYTES = 900_000

_NAMESPACE_SHA1 = hashlib.sha1(CLIENT_ID_NAMESPACE.bytes)
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 4122 variant
_METERS = frozenset(METERS)
_EVENT = TypeAdapter(UsageBatchEvent)
_EVENTS = TypeAdapter(list[UsageBatchEvent])


def _uuid_text(hex32: str, version: str) -> str:
    """Canonical text of a UUID from 32 hex digits, with its version and variant set (what
    str(uuid.UUID(...)) gives, at a third of the cost)."""
    h = hex32
    return f"{h[:8]}-{h[8:12]}-{version}{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def event_id_text(tenant_id: str, client_id: str) -> str:
    """str(event_id_for(tenant_id, client_id)): the uuid5, without building UUID objects."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update(f"{tenant_id}\x1f{client_id}".encode())
    return _uuid_text(digest.hexdigest(), "5")


def event_id_for(tenant_id: str, client_id: str) -> uuid.UUID:
    return uuid.UUID(event_id_text(tenant_id, client_id))


def random_event_id() -> str:
    """str(uuid.uuid4())."""
    return _uuid_text(os.urandom(16).hex(), "4")


class UsagePublisher(Protocol):
    async def publish_all(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) `usage.UsageBatchRecorded` records and return once every one is
        acknowledged (acks=all)."""
        ...


class ItemResult(NamedTuple):
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


def _timing_message(problem: str, rules: AcceptanceRules) -> str:
    if problem == "timestamp_in_future":
        return f"timestamp is more than {rules.future_tolerance} ahead of the server clock"
    return f"timestamp is older than the late-arrival window ({rules.late_arrival_window})"


def _rejected(index: int, client_id: str | None, reason: str, message: str) -> ItemResult:
    return ItemResult(index, client_id, None, "rejected", reason, message)


class _Prepared(NamedTuple):
    """An item that passed the checks before validation: the event body to validate, with its ids."""

    index: int
    client_id: str | None
    event_id: str
    body: dict[str, Any]


def _prepare(
    index: int, item: Any, *, tenant_id: str, principal: str, now_text: str
) -> _Prepared | ItemResult:
    """The checks that need the item as sent, then the body to validate (defaults filled in and the
    event id derived), or the item's rejection."""
    if not isinstance(item, dict):
        return ItemResult(index, None, None, "rejected", "invalid_event", "each event must be an object")
    body = item.copy()
    client_id = body.pop("event_id", None)
    if client_id is not None and (not isinstance(client_id, str) or not 1 <= len(client_id) <= 200):
        return ItemResult(index, None, None, "rejected", "invalid_event", "event_id: 1-200 characters")
    if item.get("tenant_id") not in (None, tenant_id):
        return _rejected(
            index, client_id, "tenant_mismatch", f"tenant_id {item.get('tenant_id')!r} is not {tenant_id!r}"
        )
    meter = body.get("meter")
    if isinstance(meter, str) and meter not in _METERS:
        return _rejected(
            index, client_id, "unknown_meter", f"unknown meter {meter!r}; known: {', '.join(METERS)}"
        )
    event_id = _fill_in(body, index, client_id, tenant_id=tenant_id, principal=principal, now_text=now_text)
    return _Prepared(index, client_id, event_id, body)


def _fill_in(
    body: dict[str, Any], index: int, client_id: str | None, *, tenant_id: str, principal: str, now_text: str
) -> str:
    """Fill in what the API adds to an event (its tenant, the defaults, the event id derived from the
    client's id); the event id."""
    body["tenant_id"] = tenant_id
    body.setdefault("user_id", principal)
    body.setdefault("provider", "internal")
    body.setdefault("request_id", client_id or f"bulk-{index}")
    body.setdefault("timestamp", now_text)
    event_id = event_id_text(tenant_id, client_id) if client_id else random_event_id()
    body["event_id"] = event_id
    return event_id


class _Checked(NamedTuple):
    """What `_judge` reads of an event validated in its canonical form (`UsageBatchEvent`'s name)."""

    timestamp: datetime


def _validate_canonical(prepared: Sequence[_Prepared]) -> list[_Checked] | None:
    """All the events validated in one call as `CanonicalUsageBatchEvent`s (the usual request: no
    Python call per field, no model; ~5 µs less per event); None when one is not in that form or
    breaks a rule, and then the model decides about each."""
    try:
        events = CANONICAL_BATCH_EVENTS.validate_python([p.body for p in prepared])
    except ValidationError:
        return None
    checked: list[_Checked] = []
    for event in events:
        if canonical_amounts(event) is None:
            return None
        checked.append(_Checked(event["timestamp"]))
    return checked


def _validate(prepared: _Prepared) -> UsageBatchEvent | ItemResult:
    try:
        return _EVENT.validate_python(prepared.body)
    except ValidationError as exc:
        return _rejected(
            prepared.index, prepared.client_id, *_reason(exc.errors(include_url=False), prepared.body)
        )


# The wire forms the contract's JSON Schema promises (ASCII digits only, as its patterns mean).
_DECIMAL_TEXT = re.compile(CANONICAL_DECIMAL_PATTERN)
# With the offset's hours and minutes bounded, as RFC 3339 has them.
_RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(_RFC3339_PATTERN)


def _in_wire_form(body: dict[str, Any], event: UsageBatchEvent | _Checked) -> dict[str, Any]:
    """The accepted body with its timestamp and amounts as the schema says: the model also accepts
    looser input (unix seconds, numbers, "1e3", " 5"), which goes out in canonical form; the usual
    input, already canonical, goes out as sent."""
    timestamp = body["timestamp"]
    if type(timestamp) is not str or not _RFC3339.fullmatch(timestamp):
        body["timestamp"] = event.timestamp.isoformat()
    if type(event) is _Checked:
        return body  # its amounts were validated in their canonical form
    quantity = body["quantity"]
    if type(quantity) is not str or not _DECIMAL_TEXT.fullmatch(quantity):
        body["quantity"] = decimal_text(event.quantity)
    cost = body.get("cost_usd_estimate")
    if cost is not None and (type(cost) is not str or not _DECIMAL_TEXT.fullmatch(cost)):
        assert event.cost_usd_estimate is not None
        body["cost_usd_estimate"] = decimal_text(event.cost_usd_estimate)
    return body


def _judge(
    prepared: _Prepared, event: UsageBatchEvent | _Checked, rules: AcceptanceRules, bounds: TimingBounds
) -> tuple[ItemResult, dict[str, Any] | None]:
    """The check of a validated event that depends on the moment: its timing (validation applied
    the contract's rules, its sign among them)."""
    problem = bounds.problem(event.timestamp)
    if problem is not None:
        return _rejected(prepared.index, prepared.client_id, problem, _timing_message(problem, rules)), None
    accepted = ItemResult(prepared.index, prepared.client_id, prepared.event_id, "accepted")
    return accepted, _in_wire_form(prepared.body, event)


# --- the request as most clients send it: one pass from its bytes -----------------------------
_Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CanonicalClientEvent(CanonicalUsageFields):
    """A request's event in the form the schema documents, as most clients send it: the fields of
    `CanonicalUsageBatchEvent`, with those the API fills in optional (the client's `event_id`, 1-200
    characters, instead of the event id the API derives), decimals as plain text and the timestamp
    as RFC 3339 text (kept as sent, parsed by `_judge_canonical`). Anything else goes the way of
    `validate_items`, which says what is wrong."""

    event_id: NotRequired[_Text200]
    tenant_id: NotRequired[str]
    user_id: NotRequired[Annotated[str, StringConstraints(min_length=1)]]
    provider: NotRequired[UsageProvider]
    request_id: NotRequired[_Text200]
    timestamp: NotRequired[Annotated[str, StringConstraints(pattern=_RFC3339_PATTERN)]]


_EVENT_COUNT = Field(min_length=1, max_length=MAX_BATCH_EVENTS)  # of a request (BulkUsageRequest)


class _CanonicalRequest(TypedDict):
    events: Annotated[list[CanonicalClientEvent], _EVENT_COUNT]


class _Request(TypedDict):
    """The request body (`BulkUsageRequest`): each event is judged on its own afterwards."""

    events: Annotated[list[Any], _EVENT_COUNT]


_CANONICAL_REQUEST = TypeAdapter(_CanonicalRequest)
_REQUEST = TypeAdapter(_Request)
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


class ParsedRequest(NamedTuple):
    events: list[Any]
    canonical: bool  # every event validated as a CanonicalClientEvent


def parse_request(body: bytes) -> ParsedRequest:
    """A bulk request's events from its JSON bytes: in one pydantic-core pass when all of them are
    in the canonical client form (JSON parsed and validated together, no Python per field: ~2.3 µs
    less per event than json.loads, the checks per item and a validation of the dictionaries);
    otherwise as they are, for `validate_items`. Raises ValidationError when the body is not a
    request (not JSON, no `events`, more than 1,000 of them)."""
    try:
        return ParsedRequest(_CANONICAL_REQUEST.validate_json(body)["events"], True)
    except ValidationError:
        return ParsedRequest(_REQUEST.validate_json(body)["events"], False)


def _judge_canonical(
    events: Sequence[CanonicalClientEvent],
    *,
    tenant_id: str,
    principal: str,
    rules: AcceptanceRules,
    now: datetime,
) -> list[tuple[ItemResult, dict[str, Any] | None]] | None:
    """`validate_items` of events validated as `CanonicalClientEvent`s, or None (nothing changed)
    when one of them breaks a rule its schema cannot say (another tenant, the sign of its meter, its
    dimensions, a timestamp that is no date): then `validate_items` judges them all, as sent."""
    timestamps: list[datetime | None] = []
    for event in events:
        if event.get("tenant_id", tenant_id) != tenant_id or canonical_amounts(event) is None:  # type: ignore[arg-type]
            return None
        sent = event.get("timestamp")
        try:  # the model's own parser: the two ways cannot disagree about a timestamp
            timestamps.append(None if sent is None else _TIMESTAMP.validate_python(sent))
        except ValidationError:
            return None
    now_text = now.isoformat()
    bounds = rules.bounds(now)
    results: list[tuple[ItemResult, dict[str, Any] | None]] = []
    for index, (event, timestamp) in enumerate(zip(events, timestamps, strict=True)):
        body: dict[str, Any] = event  # type: ignore[assignment]
        client_id = body.pop("event_id", None)
        event_id = _fill_in(
            body, index, client_id, tenant_id=tenant_id, principal=principal, now_text=now_text
        )
        problem = None if timestamp is None else bounds.problem(timestamp)
        if problem is not None:
            results.append((_rejected(index, client_id, problem, _timing_message(problem, rules)), None))
        else:
            results.append((ItemResult(index, client_id, event_id, "accepted"), body))
    return results


def validate_items(
    items: Sequence[Any], *, tenant_id: str, principal: str, rules: AcceptanceRules, now: datetime
) -> list[tuple[ItemResult, dict[str, Any] | None]]:
    """Judge each event of a request on its own; an accepted one comes back with the batch item to
    produce: the event as sent, with the fields the API fills in (tenant, ids, defaults) and any
    loosely written timestamp or amount in its wire form. It is a valid `UsageBatchEvent` as it
    stands, so it is written as it is instead of serializing the validated model (~1.2 µs less per
    event), and export later shows it as sent.

    The prepared bodies are validated in one call, in their canonical form when they all are in it,
    else with the model (a call per event costs ~1 µs more each); only when one of them is bad are
    they validated one by one, to say which and why."""
    now_text = now.isoformat()
    bounds = rules.bounds(now)
    steps = [
        _prepare(i, item, tenant_id=tenant_id, principal=principal, now_text=now_text)
        for i, item in enumerate(items)
    ]
    prepared = [step for step in steps if isinstance(step, _Prepared)]
    validated: Sequence[UsageBatchEvent | _Checked | ItemResult] | None = _validate_canonical(prepared)
    if validated is None:
        try:
            validated = list(_EVENTS.validate_python([p.body for p in prepared]))
        except ValidationError:
            validated = [_validate(p) for p in prepared]
    outcome = dict(zip((p.index for p in prepared), validated, strict=True))
    results: list[tuple[ItemResult, dict[str, Any] | None]] = []
    for step in steps:
        if isinstance(step, ItemResult):
            results.append((step, None))
            continue
        event = outcome[step.index]
        results.append((event, None) if isinstance(event, ItemResult) else _judge(step, event, rules, bounds))
    return results


def _record_head(tenant_id: str, position: int, *, now_text: str, request_id: str | None) -> bytes:
    """A record's envelope up to (not including) its events list: the payload is written last, so
    the events' JSON is appended as it is, with no re-encoding."""
    record_id = random_event_id()
    envelope = {
        "event_id": record_id,
        "event_type": USAGE_BATCH_RECORDED,
        "schema_version": USAGE_BATCH_RECORDED_VERSION,
        "stream_id": f"usage-bulk:{tenant_id}:{request_id or record_id}",
        "stream_version": position,
        "tenant_id": tenant_id,
        "occurred_at": now_text,
        "producer": "usage-meter",
        "correlation_id": request_id,
        "causation_id": request_id,
        "payload": {"tenant_id": tenant_id},
    }
    text = json.dumps(envelope, separators=(",", ":")).encode()
    return text[: -len(b"}}")] + b',"events":'


def batch_record_values(
    events: Sequence[dict[str, Any]],
    *,
    tenant_id: str,
    now: datetime,
    request_id: str | None,
    max_bytes: int = MAX_RECORD_BYTES,
) -> list[bytes]:
    """Wire envelopes of `usage.UsageBatchRecorded` carrying `events` (valid batch items) in order:
    one record, or as few as keep each within max_bytes and MAX_BATCH_EVENTS (an event alone larger
    still gets a record).
    Split records are positions 1, 2, ... of the request's stream."""
    if not events:
        return []
    now_text = now.isoformat()
    head = _record_head(tenant_id, 1, now_text=now_text, request_id=request_id)
    whole = pydantic_core.to_json(events)  # the usual case: one serializer call for all of them
    if len(head) + len(whole) + 2 <= max_bytes and len(events) <= MAX_BATCH_EVENTS:
        return [head + whole + b"}}"]
    # Heads differ only in their position's digits (the record id is a uuid): budget for the longest.
    budget = max_bytes - len(head) - (len(str(len(events))) - 1) - len(b"[]}}")
    chunks: list[list[bytes]] = [[]]
    size = 0
    for event in events:
        part = pydantic_core.to_json(event)
        current = chunks[-1]
        if current and (size + len(part) + 1 > budget or len(current) == MAX_BATCH_EVENTS):
            chunks.append([])
            current, size = chunks[-1], 0
        current.append(part)
        size += len(part) + 1
    heads = [head] + [
        _record_head(tenant_id, position, now_text=now_text, request_id=request_id)
        for position in range(2, len(chunks) + 1)
    ]
    return [h + b"[" + b",".join(chunk) + b"]}}" for h, chunk in zip(heads, chunks, strict=True)]


async def ingest_bulk(
    items: Sequence[Any],
    *,
    tenant_id: str,
    principal: str,
    rules: AcceptanceRules,
    publisher: UsagePublisher,
    request_id: str | None = None,
    now: datetime | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
    canonical: bool = False,
) -> list[ItemResult]:
    """Judge each event, produce the accepted ones (acks=all), and say what became of each.
    `canonical`: `items` were validated as `CanonicalClientEvent`s (`parse_request`)."""
    now = now or datetime.now(UTC)
    results: list[ItemResult] = []
    accepted: list[dict[str, Any]] = []
    sent: set[str | None] = set()
    judged = None
    if canonical:
        judged = _judge_canonical(items, tenant_id=tenant_id, principal=principal, rules=rules, now=now)
    if judged is None:
        judged = validate_items(items, tenant_id=tenant_id, principal=principal, rules=rules, now=now)
    for result, wire_item in judged:
        results.append(result)
        if wire_item is not None and result.event_id not in sent:
            sent.add(result.event_id)  # the same client id twice in one request is sent once
            accepted.append(wire_item)
    if accepted:
        key = tenant_id.encode()
        values = batch_record_values(
            accepted, tenant_id=tenant_id, now=now, request_id=request_id, max_bytes=max_record_bytes
        )
        await publisher.publish_all([(key, value) for value in values])
    return results
