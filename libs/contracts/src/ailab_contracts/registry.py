"""Registry of (event_type, schema_version) -> payload model, with step-wise upcasters.

Old payloads are upcast on the raw dict, one version at a time, before validation, so that
handlers only ever see the latest model of an event type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .envelope import EventEnvelope

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    """The event type or version is not registered in this contracts package."""


@dataclass
class _TypeEntry:
    models: dict[int, type[BaseModel]] = field(default_factory=dict)
    upcasters: dict[int, Upcaster] = field(default_factory=dict)  # from version -> version + 1

    @property
    def latest(self) -> int:
        return max(self.models)


class EventRegistry:
    def __init__(self) -> None:
        self._types: dict[str, _TypeEntry] = {}
        self._model_types: dict[type[BaseModel], tuple[str, int]] = {}

    def register(self, event_type: str, version: int, model: type[BaseModel]) -> None:
        entry = self._types.setdefault(event_type, _TypeEntry())
        if version in entry.models:
            raise ValueError(f"{event_type} v{version} registered twice")
        entry.models[version] = model
        self._model_types[model] = (event_type, version)

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register the function turning a v`from_version` payload into v`from_version+1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._types.setdefault(event_type, _TypeEntry()).upcasters[from_version] = fn
            return fn

        return decorate

    def event_types(self) -> list[str]:
        return sorted(self._types)

    def versions(self, event_type: str) -> list[int]:
        return sorted(self._entry(event_type).models)

    def model(self, event_type: str, version: int | None = None) -> type[BaseModel]:
        entry = self._entry(event_type)
        v = entry.latest if version is None else version
        if v not in entry.models:
            raise UnknownEventType(f"{event_type} v{v}")
        return entry.models[v]

    def type_of(self, payload: BaseModel) -> tuple[str, int]:
        try:
            return self._model_types[type(payload)]
        except KeyError as exc:
            raise UnknownEventType(type(payload).__name__) from exc

    def latest_version(self, event_type: str) -> int:
        return self._entry(event_type).latest

    def upcast(self, event_type: str, version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        entry = self._entry(event_type)
        if version > entry.latest:
            raise UnknownEventType(f"{event_type} v{version} is newer than this consumer (v{entry.latest})")
        data = dict(payload)
        while version < entry.latest:
            step = entry.upcasters.get(version)
            if step is None:
                raise UnknownEventType(f"no upcaster for {event_type} v{version}")
            data = step(data)
            version += 1
        return version, data

    def parse_payload(self, event_type: str, version: int, payload: dict[str, Any]) -> BaseModel:
        latest, data = self.upcast(event_type, version, payload)
        return self.model(event_type, latest).model_validate(data)

    def parse(self, raw: dict[str, Any]) -> tuple[EventEnvelope, BaseModel]:
        """Validate a wire dict: returns the envelope (upcast to the latest version) and the payload model."""
        envelope = EventEnvelope.model_validate(raw)
        model = self.parse_payload(envelope.event_type, envelope.schema_version, envelope.payload)
        latest = self.latest_version(envelope.event_type)
        upgraded = envelope.model_copy(
            update={"schema_version": latest, "payload": model.model_dump(mode="json")}
        )
        return upgraded, model

    def _entry(self, event_type: str) -> _TypeEntry:
        try:
            return self._types[event_type]
        except KeyError as exc:
            raise UnknownEventType(event_type) from exc


def new_envelope(
    registry: EventRegistry,
    payload: BaseModel,
    *,
    stream_id: str,
    stream_version: int,
    tenant_id: str,
    producer: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> EventEnvelope:
    event_type, version = registry.type_of(payload)
    return EventEnvelope(
        event_type=event_type,
        schema_version=version,
        stream_id=stream_id,
        stream_version=stream_version,
        tenant_id=tenant_id,
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=payload.model_dump(mode="json"),
    )
