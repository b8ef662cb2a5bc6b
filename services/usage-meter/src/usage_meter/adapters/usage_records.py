"""Decoding records of `ailab.usage.events` into usage entries.

Two record types carry usage: `usage.UsageRecorded` (one event; run-executor, registry storage) and
`usage.UsageBatchRecorded` (up to 1,000 events with their own ids; the bulk API). Both end up as the
same `UsageEntry`s, deduplicated by event id. A record's problems are reported per item: the good
items of a batch still count, the record goes to the dead-letter topic once, naming the bad items
(replaying it later is harmless: its good items are duplicates by then)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ailab_contracts import EventRegistry
from ailab_contracts.events.usage import (
    CanonicalUsageBatchEvent,
    CanonicalUsageBatchPayload,
    UsageBatchEvent,
    UsageBatchRecorded,
    UsageRecorded,
    canonical_amounts,
)

from ..application.bulk import USAGE_BATCH_RECORDED
from ..domain.model import AcceptanceRules, RecordItem, UsageEntry

USAGE_RECORDED = "usage.UsageRecorded"
USAGE_TYPES = frozenset({USAGE_RECORDED, USAGE_BATCH_RECORDED})


class Rejected(Exception):
    """The whole record is refused (unparseable, or its envelope and payload disagree)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class DecodedRecord:
    entries: list[UsageEntry] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)  # (item index, reason, message)
    repeated: int = 0  # items whose event id came earlier in the same record (counted once)


def _entry(event: UsageRecorded, event_id: str, payload: dict[str, Any] | RecordItem) -> UsageEntry:
    return UsageEntry(
        event_id=event_id,
        tenant_id=event.tenant_id,
        user_id=event.user_id,
        meter=event.meter,
        quantity=event.quantity,
        cost=event.cost_usd_estimate,
        timestamp=event.timestamp,  # brought to UTC by the entry
        provider=event.provider,
        model=event.model,
        project_id=event.project_id,
        agent_id=event.agent_id,
        payload=payload,
    )


def entry_from(registry: EventRegistry, raw: dict[str, Any]) -> UsageEntry:
    """The entry of a `usage.UsageRecorded` envelope (wire dict)."""
    if raw.get("schema_version") == registry.latest_version(USAGE_RECORDED):
        # Hot path (current version, no upcasting): validate the payload model and the envelope
        # fields used here; the full envelope model costs as much again per event.
        payload = raw["payload"]
        event = UsageRecorded.model_validate(payload)
        event_id = uuid.UUID(str(raw["event_id"]))
        tenant = raw["tenant_id"]
    else:
        envelope, parsed = registry.parse(raw)
        assert isinstance(parsed, UsageRecorded)
        event, event_id, tenant = parsed, envelope.event_id, envelope.tenant_id
        payload = parsed.model_dump(mode="json")
    if tenant != event.tenant_id:
        raise Rejected("tenant_mismatch", f"envelope tenant {tenant} != payload {event.tenant_id}")
    return _entry(event, str(event_id), payload)


# A batch item: (index, event id, timestamp as sent, what its entry is built from) when it is valid,
# else (index, None, None, what is wrong with it). Entries are built only for events within the
# window: bringing a timestamp like 0001-01-01T00:00:00+01:00 to UTC overflows.
BatchItem = tuple[int, str, datetime, Any] | tuple[int, None, None, str]


class _BatchEnvelope(BaseModel):
    """The envelope fields of a `usage.UsageBatchRecorded` record that decoding needs, with the payload
    validated straight from the record's JSON bytes, in its canonical form: one pass in pydantic-core
    instead of json.loads plus validation of the resulting dicts, and no Python call per field or
    event model (the consumer's hot path; measured: 9.8 -> 7.7 µs per event for the whole decoding)."""

    model_config = ConfigDict(extra="ignore")

    event_type: str
    schema_version: int
    tenant_id: str
    payload: CanonicalUsageBatchPayload


def _canonical_entry(
    event: CanonicalUsageBatchEvent, amounts: tuple[Decimal, Decimal | None], payload: RecordItem
) -> UsageEntry:
    return UsageEntry(
        event_id=event["event_id"],
        tenant_id=event["tenant_id"],
        user_id=event["user_id"],
        meter=event["meter"],
        quantity=amounts[0],
        cost=amounts[1],
        timestamp=event["timestamp"],  # brought to UTC by the entry
        provider=event["provider"],
        model=event.get("model"),
        project_id=event.get("project_id"),
        agent_id=event.get("agent_id"),
        payload=payload,
    )


def decode_batch_bytes(
    registry: EventRegistry, value: bytes, rules: AcceptanceRules, received: datetime
) -> DecodedRecord | None:
    """`decode` of a batch record's bytes when the whole record is valid, in the canonical form (see
    `CanonicalUsageBatchEvent`) and of the current version; None otherwise (the caller then decodes
    it with `decode`, which validates with the contract's models and reports each bad item). The
    entries' payloads are their places in `value` (RecordItem): the ledger keeps the record's bytes."""
    try:
        record = _BatchEnvelope.model_validate_json(value)
    except ValidationError:
        return None
    if record.event_type != USAGE_BATCH_RECORDED or record.schema_version != registry.latest_version(
        USAGE_BATCH_RECORDED
    ):
        return None
    tenant = record.payload["tenant_id"]
    if record.tenant_id != tenant:
        raise Rejected("tenant_mismatch", f"envelope tenant {record.tenant_id} != payload {tenant}")
    items: list[BatchItem] = []
    for index, event in enumerate(record.payload["events"]):
        amounts = canonical_amounts(event)
        if amounts is None or event["tenant_id"] != tenant:
            return None
        items.append((index, event["event_id"], event["timestamp"], (event, amounts)))
    return _accepted(
        items, lambda index, src: _canonical_entry(src[0], src[1], (value, index)), rules, received
    )


def _batch_events(registry: EventRegistry, raw: dict[str, Any]) -> list[BatchItem]:
    """`BatchItem`s of a batch envelope, validated with the models."""
    if raw.get("schema_version") != registry.latest_version(USAGE_BATCH_RECORDED):
        _, parsed = registry.parse(raw)
        assert isinstance(parsed, UsageBatchRecorded)
        raw = {**raw, "payload": parsed.model_dump(mode="json")}
    payload = raw["payload"]
    tenant = raw["tenant_id"]
    if not isinstance(payload, dict) or payload.get("tenant_id") != tenant:
        got = payload.get("tenant_id") if isinstance(payload, dict) else None
        raise Rejected("tenant_mismatch", f"envelope tenant {tenant} != payload {got}")
    items = payload.get("events")
    try:
        batch = UsageBatchRecorded.model_validate(payload)
        return [_valid_item(i, event, items[i]) for i, event in enumerate(batch.events)]
    except ValidationError:
        pass  # find out which items are bad; the others still count
    if not isinstance(items, list) or not items:
        raise Rejected("invalid_event", "payload.events must be a non-empty list")
    results: list[BatchItem] = []
    for index, item in enumerate(items):
        try:
            event = UsageBatchEvent.model_validate(item)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "event"
            results.append((index, None, None, f"{where}: {first.get('msg')}"))
            continue
        if event.tenant_id != tenant:
            results.append((index, None, None, f"tenant_id {event.tenant_id!r} is not {tenant!r}"))
            continue
        results.append(_valid_item(index, event, item))
    return results


def _valid_item(index: int, event: UsageBatchEvent, sent: dict[str, Any]) -> BatchItem:
    return (index, event.event_id, event.timestamp, (event, sent))


def _model_entry(_index: int, source: tuple[UsageBatchEvent, dict[str, Any]]) -> UsageEntry:
    event, sent = source
    return _entry(event, event.event_id, sent)


def decode(
    registry: EventRegistry, raw: dict[str, Any], rules: AcceptanceRules, received: datetime
) -> DecodedRecord:
    """Entries of one record that pass the acceptance rules (timing relative to `received`, when the
    record reached Kafka) and the problems of the others. Raises Rejected for a whole bad record."""
    decoded = DecodedRecord()
    if raw.get("event_type") == USAGE_RECORDED:
        entry = entry_from(registry, raw)
        problem = rules.timing_problem(entry.timestamp, received)
        if problem:
            decoded.problems.append((0, problem, f"timestamp {entry.timestamp.isoformat()}"))
        else:
            decoded.entries.append(entry)
        return decoded
    return _accepted(_batch_events(registry, raw), _model_entry, rules, received)


def _accepted(
    items: Iterable[BatchItem],
    build: Callable[[int, Any], UsageEntry],
    rules: AcceptanceRules,
    received: datetime,
) -> DecodedRecord:
    """The entries of a batch's items that pass the timing rules, once per event id (`build` makes
    an item's entry from its index and source)."""
    decoded = DecodedRecord()
    seen: set[str] = set()
    bounds = rules.bounds(received)  # once per record
    for index, event_id, timestamp, source in items:
        if event_id is None or timestamp is None:
            decoded.problems.append((index, "invalid_event", str(source)))
            continue
        if event_id in seen:
            decoded.repeated += 1
            continue
        seen.add(event_id)
        timing = bounds.problem(timestamp)
        if timing:
            decoded.problems.append((index, timing, f"timestamp {timestamp.isoformat()}"))
            continue
        decoded.entries.append(build(index, source))
    return decoded
