"""Events of usage metering (topic `ailab.usage.events`): every producer of usage records
`usage.UsageRecorded`; the usage-meter consumes them into its ledger and aggregates.

One event = one measurement of one meter, for one tenant and one principal. Producers record it in
their own event store (outbox), on the stream of the thing that caused the usage (a run, a dataset,
...), so it is published exactly when that change is; the relay routes every `usage.` event type
to `ailab.usage.events`, keyed by tenant. The envelope's `event_id` is the dedupe key, and the
envelope's `tenant_id` always equals the payload's `tenant_id`.

Quantities and costs are exact decimals, serialized as JSON strings (`"0.012345"`, never a binary
float that would round): a decimal string parses back to the same `Decimal`, aggregates add up
exactly, and MongoDB's Decimal128 (34 significant digits) stores them without loss. Producers may
pass a `Decimal`, an `int` or a decimal string; a float is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, NotRequired, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

UsageMeter = Literal[
    "requests",
    "tokens_in",
    "tokens_out",
    "images_generated",
    "audio_seconds",
    "compute_seconds",
    "storage_mb",
    "egress_mb",
    "fine_tune_tokens",
    "eval_examples",
    "latency_ms",
]
METERS: tuple[str, ...] = get_args(UsageMeter)

UsageProvider = Literal["openai", "anthropic", "bedrock", "local", "internal"]
PROVIDERS: tuple[str, ...] = get_args(UsageProvider)

# Meters measuring an amount held over time (a gauge), reported as signed deltas: storing more is
# positive, freeing it is negative. Every other meter counts things and is never negative.
DELTA_METERS: frozenset[str] = frozenset({"storage_mb"})

MAX_DIGITS = 34  # significant digits of MongoDB's Decimal128
MAX_DECIMAL_PLACES = 18
DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
CANONICAL_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"  # DECIMAL_PATTERN with ASCII digits only, as it means


def decimal_text(value: Decimal) -> str:
    """Fixed-point text of a decimal (`format(value, 'f')`): never an exponent, never a float."""
    return format(value, "f")


def _digits(value: Decimal) -> tuple[int, int]:
    """(decimal places, significant digits) of a finite decimal, trailing fractional zeros ignored
    (`1.500` has 1 place, 2 digits)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    count = len(digits)
    while count > 1 and exponent < 0 and digits[count - 1] == 0:
        count -= 1
        exponent += 1
    if exponent >= 0:
        return 0, count + exponent
    return -exponent, max(count, -exponent)


def _exact_decimal(value: Any) -> Decimal:
    """Parse and check an exact decimal in one step (a hot path: every usage event has one or two).
    Pydantic's own max_digits/decimal_places constraints cost ~6 µs each per value in Python."""
    if type(value) is not str:  # the usual type first: one check instead of three per value
        if isinstance(value, bool):
            raise ValueError("expected a decimal string, not a boolean")
        if isinstance(value, float):
            raise ValueError('send exact quantities as decimal strings (e.g. "0.25"), not as floats')
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not a decimal number") from exc
        if len(value) <= MAX_DIGITS - MAX_DECIMAL_PLACES and "e" not in value and "E" not in value:
            # Common case: a short plain number has too few digits to break either limit.
            if not parsed.is_finite():
                raise ValueError("NaN and Infinity are not exact decimals")
            return parsed
    elif isinstance(value, Decimal):
        parsed = value
    elif isinstance(value, int):
        parsed = Decimal(value)
    else:
        raise ValueError("expected a decimal string")
    if not parsed.is_finite():
        raise ValueError("NaN and Infinity are not exact decimals")
    places, digits = _digits(parsed)
    if places > MAX_DECIMAL_PLACES:
        raise ValueError(f"at most {MAX_DECIMAL_PLACES} decimal places")
    if digits - places > MAX_DIGITS - MAX_DECIMAL_PLACES:
        raise ValueError(f"at most {MAX_DIGITS - MAX_DECIMAL_PLACES} digits before the decimal point")
    return parsed


ExactDecimal = Annotated[
    Decimal,
    PlainValidator(_exact_decimal),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "Exact decimal number as a string (fixed-point, no exponent).",
        }
    ),
]
"""An exact decimal that travels as a fixed-point string (`"12.5"`, `"-0.000001"`)."""

DimensionKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
DimensionValue = str | int | float | bool | None


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UsageRecorded(_Event):
    """A measured quantity of one meter (the specification's `UsageEventPayload`)."""

    tenant_id: str = Field(min_length=1, description="Tenant the usage is billed to.", examples=["acme"])
    user_id: str = Field(
        min_length=1,
        description="Principal that caused the usage (user id, API key id, or `system`).",
        examples=["usr_8f2c"],
    )
    project_id: str | None = Field(default=None, description="Project, when known.", examples=["prj_01"])
    agent_id: str | None = Field(default=None, description="Agent, when known.", examples=["agt_01"])
    run_id: str | None = Field(default=None, description="Run, when the usage belongs to one.")
    tool_id: str | None = Field(default=None, description="Tool, when the usage belongs to one.")
    meter: UsageMeter = Field(
        description="What is measured; the unit is in the name.", examples=["tokens_in"]
    )
    quantity: ExactDecimal = Field(
        description="Amount in the meter's unit, exact. Never negative, except for delta meters "
        "(`storage_mb`), whose negative quantities report freed storage.",
        examples=["1250", "0.012345", "-10.5"],
    )
    cost_usd_estimate: ExactDecimal | None = Field(
        default=None,
        description="Producer's estimate in US dollars (exact decimal string); the billing rating is "
        "authoritative.",
        examples=["0.00125"],
    )
    provider: UsageProvider = Field(
        description="Who served it: an LLM provider, the built-in `local` provider, or `internal` "
        "for the platform's own resources (storage, compute).",
        examples=["openai"],
    )
    model: str | None = Field(
        default=None, max_length=200, description="Provider model.", examples=["gpt-4o"]
    )
    request_id: str = Field(
        min_length=1,
        max_length=200,
        description="Request (or job) that caused the usage; correlates with logs and traces.",
        examples=["req_5b1e9a"],
    )
    timestamp: AwareDatetime = Field(
        description="When the usage happened (ISO 8601 with offset); the day it is billed on.",
        examples=["2026-11-27T12:00:00Z"],
    )
    dimensions: dict[DimensionKey, DimensionValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Scalar attributes to group by (endpoint, status, dataset_id, latency_ms, ...).",
        examples=[{"dataset_id": "dst_01", "bytes_delta": 12345, "action": "upload"}],
    )

    @field_validator("dimensions")
    @classmethod
    def _finite_numbers(cls, value: dict[str, DimensionValue]) -> dict[str, DimensionValue]:
        problem = dimensions_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _sign(self) -> UsageRecorded:
        problem = sign_problem(self.quantity, self.meter)
        if problem:
            raise ValueError(problem)
        return self


def dimensions_problem(value: dict[str, DimensionValue]) -> str | None:
    """What is wrong with valid-typed dimensions, if anything (a rule of `UsageRecorded`)."""
    for key, item in value.items():
        if isinstance(item, float) and not math.isfinite(item):
            return f"dimension {key!r}: NaN and Infinity are not JSON numbers"
        if isinstance(item, int) and not isinstance(item, bool) and not -(2**63) <= item < 2**63:
            return f"dimension {key!r}: integers must fit in 64 bits"
        if isinstance(item, str) and len(item) > 500:
            return f"dimension {key!r}: at most 500 characters"
    return None


def sign_problem(quantity: Decimal, meter: str) -> str | None:
    """Only delta meters may be negative (a rule of `UsageRecorded`)."""
    if quantity < 0 and meter not in DELTA_METERS:
        return f"quantity of meter {meter} cannot be negative"
    return None


MAX_BATCH_EVENTS = 1000
EVENT_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class UsageBatchEvent(UsageRecorded):
    """One usage event inside a `usage.UsageBatchRecorded` record: a `usage.UsageRecorded` payload
    plus the event id an envelope would carry."""

    # Text in the canonical lowercase form, not a UUID object: a thousand of these per record are
    # validated on the hot path, and the consumer keys its ledger by the text anyway.
    event_id: str = Field(
        pattern=EVENT_ID_PATTERN,
        json_schema_extra={"format": "uuid"},
        description="This event's dedupe key (what the envelope's `event_id` is for a single event): "
        "a UUID in canonical lowercase form.",
        examples=["0b7e3c1a-5d2f-5e4a-9c8b-1f2e3d4c5b6a"],
    )


class UsageBatchRecorded(_Event):
    """Usage events accepted together (by the bulk API), carried by one Kafka record instead of one
    record each: producing, storing and consuming 1,000 small records costs far more than one.

    Each event counts exactly as a `usage.UsageRecorded` with envelope `event_id` = the item's
    `event_id` would: the usage-meter dedupes by that id across both forms. The envelope's own
    `event_id` identifies the record only. Every item belongs to the envelope's tenant."""

    tenant_id: str = Field(min_length=1, examples=["acme"])
    events: list[UsageBatchEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)

    @model_validator(mode="after")
    def _one_tenant(self) -> UsageBatchRecorded:
        for index, event in enumerate(self.events):
            if event.tenant_id != self.tenant_id:
                raise ValueError(f"events[{index}].tenant_id {event.tenant_id!r} is not {self.tenant_id!r}")
        return self


# --- the canonical wire form of batch events: a fast path for validating them --------------------
CanonicalDecimal = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=MAX_DIGITS - MAX_DECIMAL_PLACES, pattern=CANONICAL_DECIMAL_PATTERN),
]
"""Plain fixed-point text of at most 16 characters (a `str`, nothing converted to one): an exact
decimal that cannot break the digit limits (what `ExactDecimal` accepts with the value
`Decimal(text)`)."""


class CanonicalUsageFields(TypedDict):
    """The fields of a usage event in their canonical form that are the same wherever it is written:
    in a batch record (`CanonicalUsageBatchEvent`) and in a bulk API request (the usage-meter's
    `CanonicalClientEvent`, whose other fields the API fills in)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    project_id: NotRequired[str | None]
    agent_id: NotRequired[str | None]
    run_id: NotRequired[str | None]
    tool_id: NotRequired[str | None]
    meter: UsageMeter
    quantity: CanonicalDecimal
    cost_usd_estimate: NotRequired[CanonicalDecimal | None]
    model: NotRequired[Annotated[str, StringConstraints(max_length=200)] | None]
    dimensions: NotRequired[Annotated[dict[DimensionKey, DimensionValue], Field(max_length=32)]]


class CanonicalUsageBatchEvent(CanonicalUsageFields):
    """A `UsageBatchEvent` in the form the bulk API writes it: decimals as `CanonicalDecimal`, every
    other field exactly as the model declares it.

    Validating a list of these (`CANONICAL_BATCH_EVENTS`) runs in pydantic-core alone, with no Python
    call per field and no model instance: about a third of the model's cost, on the hot path of
    the bulk API and of the usage consumer. With `canonical_amounts` it accepts a subset of what
    `UsageBatchEvent` accepts, with the same values (dictionaries instead of models, decimals still
    text); anything it refuses must be validated with the model, which says what is wrong.
    tests/test_usage_events.py checks the schemas field by field and both on random events."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    tenant_id: Annotated[str, StringConstraints(min_length=1)]
    user_id: Annotated[str, StringConstraints(min_length=1)]
    provider: UsageProvider
    request_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    timestamp: AwareDatetime
    event_id: Annotated[
        str, StringConstraints(pattern=EVENT_ID_PATTERN), Field(json_schema_extra={"format": "uuid"})
    ]


class CanonicalUsageBatchPayload(TypedDict):
    """`UsageBatchRecorded`'s payload with its events in the canonical form. Its one-tenant rule is
    for the reader to check per event (each event's `tenant_id` is the payload's)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    tenant_id: Annotated[str, StringConstraints(min_length=1)]
    events: Annotated[list[CanonicalUsageBatchEvent], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


CANONICAL_BATCH_EVENTS: TypeAdapter[list[CanonicalUsageBatchEvent]] = TypeAdapter(
    list[CanonicalUsageBatchEvent]
)


def canonical_amounts(event: CanonicalUsageBatchEvent) -> tuple[Decimal, Decimal | None] | None:
    """The quantity and cost of an event validated as `CanonicalUsageBatchEvent`, as the model has
    them; None when it breaks a rule of `UsageRecorded` a schema cannot say (the sign by meter, the
    dimensions' values): then the model must decide, and say why."""
    quantity = Decimal(event["quantity"])
    dimensions = event.get("dimensions")
    if sign_problem(quantity, event["meter"]) or (dimensions and dimensions_problem(dimensions)):
        return None
    cost = event.get("cost_usd_estimate")
    return quantity, None if cost is None else Decimal(cost)


class MeterTotal(_Event):
    """One meter's total over a period: what billing rates and charges."""

    quantity: ExactDecimal = Field(description="Sum of the meter's accepted quantities.", examples=["1250"])
    cost_usd_estimate: ExactDecimal = Field(
        description="Sum of the producers' cost estimates (events without one add nothing).",
        examples=["0.00125"],
    )
    events: int = Field(ge=0, description="Accepted events counted.", examples=[12])
    unique_users: int = Field(ge=0, examples=[3])
    unique_projects: int = Field(ge=0, examples=[2])


class DailyUsageClosed(_Event):
    """A tenant's UTC day is final: the late-arrival window after it has passed, so its totals no
    longer change. Published once per tenant and day (stream `usage-day:{tenant}:{day}`); billing
    charges exactly these totals."""

    tenant_id: str = Field(min_length=1, examples=["acme"])
    day: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day, YYYY-MM-DD.", examples=["2026-11-26"]
    )
    meters: dict[UsageMeter, MeterTotal] = Field(
        description="Totals of every meter that had usage that day.",
    )
    closed_at: AwareDatetime = Field(examples=["2026-11-27T01:00:00Z"])


QuotaMeter = Literal["requests", "tokens", "storage", "users", "projects"]
QuotaState = Literal["ok", "warning", "exceeded"]


class QuotaStateChanged(_Event):
    """A tenant's use of a plan limit crossed a threshold (80 % → `warning`, 100 % → `exceeded`) or
    fell back (new month, higher limit → `ok`). The gateway keeps the latest state per tenant and
    quota and refuses work on an `exceeded` hard limit with 429 `quota_exceeded`; the monitor alerts
    on `warning`. Stream `quota:{tenant}:{quota}`; consumers apply the highest `sequence` only."""

    tenant_id: str = Field(min_length=1, examples=["acme"])
    quota: QuotaMeter = Field(
        description="`requests` and `tokens` (= tokens_in + tokens_out) per calendar month (UTC), "
        "`storage` in MB, `users` and `projects` as counts.",
        examples=["requests"],
    )
    period: str = Field(
        description="`YYYY-MM` for monthly quotas, `current` for the others.", examples=["2026-11"]
    )
    limit: int = Field(description="Plan limit in the quota's unit; -1 means unlimited.", examples=[1000])
    used: ExactDecimal = Field(description="Use counted when the state changed.", examples=["800"])
    state: QuotaState = Field(examples=["warning"])
    previous_state: QuotaState = Field(examples=["ok"])
    threshold_pct: int = Field(description="The threshold crossed: 0 (back to ok), 80 or 100.", examples=[80])
    resets_at: AwareDatetime | None = Field(
        default=None,
        description="When a monthly quota starts over (first instant of the next UTC month).",
        examples=["2026-12-01T00:00:00Z"],
    )
    sequence: int = Field(ge=1, description="Increases with every change of this tenant's quota.")


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("usage.UsageRecorded", 1, UsageRecorded),
    ("usage.UsageBatchRecorded", 1, UsageBatchRecorded),
    ("usage.DailyUsageClosed", 1, DailyUsageClosed),
    ("usage.QuotaStateChanged", 1, QuotaStateChanged),
]

# (event_type, from_version, function turning a v(from_version) payload into v(from_version + 1))
UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
