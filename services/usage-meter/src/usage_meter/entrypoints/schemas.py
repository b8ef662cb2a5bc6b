"""HTTP schemas of the usage-meter (request and response bodies, with OpenAPI examples)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from ailab_contracts.events.usage import MAX_BATCH_EVENTS

DECIMAL = Field(description="Exact decimal string.", examples=["125000"])


# An event object as sent: checked item by item by the bulk ingestion (a non-object item is rejected
# on its own), so the request model does not copy and check a thousand dicts first.
EventObject = Annotated[Any, WithJsonSchema({"type": "object", "additionalProperties": True})]


class BulkUsageRequest(BaseModel):
    events: list[EventObject] = Field(
        min_length=1,
        max_length=MAX_BATCH_EVENTS,
        description="Up to 1,000 usage events, each validated on its own. Fields as `usage.UsageRecorded`, "
        "plus `event_id` (your id, 1-200 chars: the same id retried counts once). `tenant_id` is optional "
        "(must equal the path's); `user_id` defaults to the caller, `provider` to `internal`, `timestamp` "
        "to now.",
        examples=[
            [
                {
                    "event_id": "req_5b1e9a-in",
                    "meter": "tokens_in",
                    "quantity": "1250",
                    "cost_usd_estimate": "0.003125",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "user_id": "usr_8f2c",
                    "project_id": "prj_01",
                    "timestamp": "2026-11-27T12:00:00Z",
                }
            ]
        ],
    )


class BulkItemResult(BaseModel):
    index: int = Field(description="Position in the request's `events`.")
    event_id: str | None = Field(description="Your `event_id`, as sent.", examples=["req_5b1e9a-in"])
    usage_event_id: str | None = Field(description="Event id on Kafka (uuid5 of tenant and your id).")
    status: Literal["accepted", "rejected"]
    reason: (
        Literal[
            "unknown_meter",
            "negative_quantity",
            "timestamp_in_future",
            "timestamp_too_old",
            "tenant_mismatch",
            "invalid_event",
        ]
        | None
    ) = None
    message: str | None = None


class BulkIngestResponse(BaseModel):
    accepted: int = Field(examples=[999])
    rejected: int = Field(examples=[1])
    results: list[BulkItemResult]


class GroupOut(BaseModel):
    quantity: str = DECIMAL
    cost_usd_estimate: str = DECIMAL
    events: int


class MeterOut(BaseModel):
    quantity: str = DECIMAL
    cost_usd_estimate: str = Field(examples=["0.3125"])
    events: int = Field(examples=[40])
    unique_users: int = Field(examples=[3])
    unique_projects: int = Field(examples=[2])
    groups: dict[str, GroupOut] | None = Field(default=None, description="Only when `group_by` is given.")


class DailyUsageOut(BaseModel):
    tenant_id: str = Field(examples=["acme"])
    day: str = Field(examples=["2026-11-26"])
    closed: bool = Field(description="The late-arrival window has passed; totals are final.")
    stripe_sync_status: Literal["pending", "synced", "error"] | None = Field(
        description="Billing's report for a closed day; `pending` until billing reports, null while open."
    )
    stripe_sync_at: datetime | None = None
    meters: dict[str, MeterOut]


class MonthlyUsageOut(BaseModel):
    tenant_id: str = Field(examples=["acme"])
    month: str = Field(examples=["2026-11"])
    meters: dict[str, MeterOut]


class DailyPage(BaseModel):
    items: list[DailyUsageOut]
    next_cursor: str | None = None


class MonthlyPage(BaseModel):
    items: list[MonthlyUsageOut]
    next_cursor: str | None = None


class TopEntry(BaseModel):
    key: str = Field(examples=["gpt-4o"])
    cost_usd_estimate: str = DECIMAL
    events: int


class DayPoint(BaseModel):
    day: str
    cost_usd_estimate: str = DECIMAL
    meters: dict[str, str] = Field(description="Quantity per meter that day.")


class DashboardTotals(BaseModel):
    cost_usd_estimate: str = DECIMAL
    tokens: str = Field(description="tokens_in + tokens_out.", examples=["2500000"])
    meters: dict[str, MeterOut]


class DashboardOut(BaseModel):
    tenant_id: str
    month: str
    totals: DashboardTotals
    top_models: list[TopEntry]
    top_agents: list[TopEntry]
    days: list[DayPoint]


class DayCloseRequest(BaseModel):
    tenant_id: str = Field(min_length=1, examples=["acme"])
    day: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day, YYYY-MM-DD.", examples=["2026-11-27"]
    )


class DayCloseOut(BaseModel):
    tenant_id: str = Field(examples=["acme"])
    day: str = Field(examples=["2026-11-27"])
    status: Literal["requested", "closed"] = Field(
        description="`requested`: the day closer publishes `usage.DailyUsageClosed` once everything "
        "published before the request is applied (seconds); `closed`: it already was."
    )
