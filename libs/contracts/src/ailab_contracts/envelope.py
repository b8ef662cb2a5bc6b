"""The event envelope every AI Lab domain event travels in, on Kafka and in each event store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(UTC)


class EventEnvelope(BaseModel):
    """Metadata around one domain event; `payload` is validated against the registered model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="Unique id of this event; consumers dedupe on it.",
        examples=["2f1d3c1e-8c47-4b8a-9a33-6f7f3f2a9d10"],
    )
    event_type: str = Field(
        description="Past-tense, context-qualified type name.", examples=["registry.AgentCreated"]
    )
    schema_version: int = Field(ge=1, description="Version of the payload schema.", examples=[1])
    stream_id: str = Field(
        description="Aggregate stream the event belongs to.", examples=["agent:demo:agt_01"]
    )
    stream_version: int = Field(ge=1, description="Position of the event in its stream, from 1.")
    tenant_id: str = Field(description="Owning tenant; also the Kafka message key.", examples=["demo"])
    occurred_at: AwareDatetime = Field(default_factory=utc_now, description="When it happened (UTC).")
    producer: str = Field(description="Service that recorded the event.", examples=["agent-registry"])
    correlation_id: str | None = Field(
        default=None, description="Request id of the request that started the chain."
    )
    causation_id: str | None = Field(
        default=None, description="Id of the command or event that directly caused this one."
    )
    payload: dict[str, Any] = Field(description="Event body; its schema is (event_type, schema_version).")

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict (UUID and datetimes as strings)."""
        return self.model_dump(mode="json")
