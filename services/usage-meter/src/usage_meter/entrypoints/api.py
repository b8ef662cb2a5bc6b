"""Usage & analytics routes (internal; the gateway forwards the public /v1 paths verbatim)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import pydantic_core
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from ailab_runtime.context import request_id_var
from ailab_runtime.errors import ApiError, ErrorResponse
from ailab_runtime.internal import Caller

from ..application import queries
from ..application.bulk import ingest_bulk, parse_request
from ..domain.model import GROUP_DIMENSIONS
from ..wiring import UsageMeterServices
from .schemas import (
    BulkIngestResponse,
    BulkUsageRequest,
    DailyPage,
    DashboardOut,
    DayCloseOut,
    DayCloseRequest,
    MonthlyPage,
)

router = APIRouter(tags=["usage"])
admin = APIRouter(tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing internal credential"},
    422: {"model": ErrorResponse, "description": "Invalid input (details name the fields)"},
}
DAY = r"^\d{4}-\d{2}-\d{2}$"
MONTH = r"^\d{4}-\d{2}$"
GroupBy = Literal["provider", "model", "project", "agent"]
ADMIN_ROLES = ("platform_admin", "system")


def _services(request: Request) -> UsageMeterServices:
    services: UsageMeterServices = request.app.state.runtime.extras["usage"]
    return services


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", message, [{"loc": ["query", field], "msg": message}])


def _parse_day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise _invalid(field, f"{value!r} is not a date (YYYY-MM-DD)") from exc


def _parse_month(value: str, field: str) -> str:
    if not re.match(MONTH, value) or not 1 <= int(value[5:]) <= 12:
        raise _invalid(field, f"{value!r} is not a month (YYYY-MM)")
    return value


@router.post(
    "/v1/tenants/{tenant_id}/usage/events",
    status_code=202,
    response_model=BulkIngestResponse,
    summary="Ingest up to 1,000 usage events (each accepted or rejected on its own)",
    responses={**ERRORS, 503: {"model": ErrorResponse, "description": "Kafka unavailable; nothing accepted"}},
    # The body is validated from its bytes by `parse_request` (in one pass when its events are in the
    # documented form), not by FastAPI, so its schema is given here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BulkUsageRequest.model_json_schema()}},
        }
    },
)
async def ingest_usage_events(tenant_id: str, caller: Caller, request: Request) -> Response:
    """Accepted events are durably on Kafka (acks=all) before the 202; rejected ones say why."""
    services = _services(request)
    if not _is_json(request.headers.get("content-type")):  # as FastAPI checks a JSON body's
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "send the events as application/json", "type": "content_type"}]
        )
    try:
        parsed = parse_request(await request.body())
    except ValidationError as exc:  # not a request at all: 422, as FastAPI says it of a body
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc
    try:
        results = await ingest_bulk(
            parsed.events,
            tenant_id=tenant_id,
            principal=caller.principal_id,
            rules=services.rules,
            publisher=services.publisher,
            request_id=request_id_var.get(),
            canonical=parsed.canonical,
        )
    except services.publisher_errors as exc:
        raise ApiError(
            503, "kafka_unavailable", "usage events could not be stored; retry with the same ids"
        ) from exc
    accepted = sum(1 for r in results if r.status == "accepted")
    # The body BulkIngestResponse (response_model, for the docs) would give, serialized by pydantic in
    # one call: validating 1,000 results into models (FastAPI does it twice) costs more than the rest.
    content = pydantic_core.to_json(
        {
            "accepted": accepted,
            "rejected": len(results) - accepted,
            "results": [
                {
                    "index": r.index,
                    "event_id": r.client_event_id,
                    "usage_event_id": r.event_id,
                    "status": r.status,
                    "reason": r.reason,
                    "message": r.message,
                }
                for r in results
            ],
        }
    )
    return Response(content, status_code=202, media_type="application/json")


def _is_json(content_type: str | None) -> bool:
    """application/json or any `+json` type (parameters such as charset aside)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


@router.get(
    "/v1/tenants/{tenant_id}/usage/daily",
    response_model=DailyPage,
    summary="Daily usage per meter (days with usage, ascending)",
    responses=ERRORS,
)
async def daily_usage(
    tenant_id: str,
    caller: Caller,
    request: Request,
    from_: Annotated[
        str | None, Query(alias="from", description="First day, YYYY-MM-DD (default: to - 30 days)")
    ] = None,
    to: Annotated[str | None, Query(description="Last day, YYYY-MM-DD (default: today, UTC)")] = None,
    meter: Annotated[str | None, Query(description="Only this meter")] = None,
    group_by: Annotated[GroupBy | None, Query(description="Break each meter down by this dimension")] = None,
    limit: Annotated[int, Query(ge=1, le=366)] = 31,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    last = _parse_day(to, "to") if to else datetime.now(UTC).date()
    first = _parse_day(from_, "from") if from_ else last - timedelta(days=30)
    if first > last:
        raise _invalid("from", "from must not be after to")
    if (last - first).days > 366:
        raise _invalid("from", "at most 366 days per request")
    _check_meter(meter)
    if cursor is not None and not re.match(DAY, cursor):
        raise ApiError(400, "invalid_cursor", "cursor is not valid", {"cursor": cursor})
    items, next_cursor = await queries.daily(
        _services(request).views,
        tenant_id,
        first.isoformat(),
        last.isoformat(),
        meter=meter,
        group_by=group_by,
        cursor=cursor,
        limit=limit,
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/v1/tenants/{tenant_id}/usage/monthly",
    response_model=MonthlyPage,
    summary="Monthly usage per meter (months with usage, ascending)",
    responses=ERRORS,
)
async def monthly_usage(
    tenant_id: str,
    caller: Caller,
    request: Request,
    from_: Annotated[
        str | None, Query(alias="from", description="First month, YYYY-MM (default: 11 months before to)")
    ] = None,
    to: Annotated[str | None, Query(description="Last month, YYYY-MM (default: this month, UTC)")] = None,
    meter: Annotated[str | None, Query()] = None,
    group_by: Annotated[GroupBy | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=120)] = 12,
    cursor: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    last = _parse_month(to, "to") if to else datetime.now(UTC).strftime("%Y-%m")
    if from_:
        first = _parse_month(from_, "from")
    else:
        year, mon = int(last[:4]), int(last[5:])
        index = year * 12 + mon - 1 - 11
        first = f"{index // 12:04d}-{index % 12 + 1:02d}"
    if first > last:
        raise _invalid("from", "from must not be after to")
    _check_meter(meter)
    if cursor is not None and not re.match(MONTH, cursor):
        raise ApiError(400, "invalid_cursor", "cursor is not valid", {"cursor": cursor})
    items, next_cursor = await queries.monthly(
        _services(request).views,
        tenant_id,
        first,
        last,
        meter=meter,
        group_by=group_by,
        cursor=cursor,
        limit=limit,
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/v1/tenants/{tenant_id}/analytics/dashboard",
    response_model=DashboardOut,
    summary="This month's totals, top models and agents by cost, and the day series",
    responses=ERRORS,
)
async def analytics_dashboard(
    tenant_id: str,
    caller: Caller,
    request: Request,
    month: Annotated[str | None, Query(description="YYYY-MM (default: this month, UTC)")] = None,
    top: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    if month is not None:
        _parse_month(month, "month")
    return await queries.dashboard(_services(request).views, tenant_id, month, top)


def _check_meter(meter: str | None) -> None:
    from ailab_contracts.events.usage import METERS

    if meter is not None and meter not in METERS:
        raise _invalid("meter", f"unknown meter {meter!r}; known: {', '.join(METERS)}")


def _require_admin(caller: Any) -> None:
    if caller.role not in ADMIN_ROLES:
        raise ApiError(403, "forbidden", "platform_admin only")


def _parse_instant(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _invalid(field, f"{value!r} is not a date or an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


EXPORT_COLUMNS = [
    "event_id",
    "tenant_id",
    "timestamp",
    "meter",
    "quantity",
    "cost_usd_estimate",
    "user_id",
    "project_id",
    "agent_id",
    "run_id",
    "tool_id",
    "provider",
    "model",
    "request_id",
    "dimensions",
]


@admin.get(
    "/v1/admin/usage/export",
    summary="Stream the ledger's accepted events (CSV or JSON Lines), oldest first",
    responses={
        **ERRORS,
        403: {"model": ErrorResponse, "description": "Not a platform admin"},
        200: {"content": {"text/csv": {}, "application/x-ndjson": {}}, "description": "The events"},
    },
)
async def export_usage(
    caller: Caller,
    request: Request,
    from_: Annotated[str, Query(alias="from", description="Start (date or ISO time, inclusive)")],
    to: Annotated[str, Query(description="End (date or ISO time, exclusive; a date means its end)")],
    tenant_id: Annotated[str | None, Query(description="One tenant (default: all)")] = None,
    format: Annotated[Literal["csv", "jsonl"], Query()] = "jsonl",
) -> StreamingResponse:
    _require_admin(caller)
    start = _parse_instant(from_, "from")
    end = _parse_instant(to, "to")
    if re.match(DAY, to):
        end += timedelta(days=1)
    if start >= end:
        raise _invalid("from", "from must be before to")
    views = _services(request).views

    def row(event: dict[str, Any]) -> dict[str, Any]:
        return {"event_id": event["event_id"], **{k: v for k, v in event.items() if k != "event_id"}}

    async def jsonl() -> AsyncIterator[bytes]:
        async for doc in views.ledger(tenant_id, start, end):
            yield (json.dumps(row(doc), separators=(",", ":")) + "\n").encode()

    async def csv_rows() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, EXPORT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        async for doc in views.ledger(tenant_id, start, end):
            data = row(doc)
            data["dimensions"] = json.dumps(data.get("dimensions") or {}, separators=(",", ":"))
            writer.writerow(data)
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue().encode()

    name = f"usage-{tenant_id or 'all'}-{start.date()}-{end.date()}.{format}"
    return StreamingResponse(
        csv_rows() if format == "csv" else jsonl(),
        media_type="text/csv" if format == "csv" else "application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@admin.get(
    "/v1/admin/usage/ingest-stats",
    summary="This process's usage consumer counters (duplicates, dead letters, lag percentiles)",
    responses={**ERRORS, 403: {"model": ErrorResponse, "description": "Not a platform admin"}},
)
async def ingest_stats(
    caller: Caller,
    request: Request,
    reset_lag: Annotated[bool, Query(description="Clear the lag histogram after reading it")] = False,
    lag: Annotated[
        bool,
        Query(
            description="Include the lag percentiles (over every event since the last reset, read from "
            "1 % buckets)"
        ),
    ] = True,
) -> dict[str, Any]:
    _require_admin(caller)
    services = _services(request)
    snapshot = services.consumer.stats.snapshot(lag=lag)
    if reset_lag:
        services.consumer.stats.lags.clear()
    return {
        **snapshot,
        "days_closed": services.closer.closed,
        "quota_events": services.quotas.published,
        # Quota evaluations that read the database, and those settled in memory (QUOTA_CACHE_TTL_S).
        "quota_evaluations": services.quotas.evaluations,
        "quota_checks": services.quotas.checks,
    }


metrics = APIRouter(tags=["metrics"])

# (name, type, help, value of this process) in the Prometheus text exposition format.
METRICS: list[tuple[str, str, str, Any]] = [
    (
        "usage_records_consumed_total",
        "counter",
        "Kafka records read from ailab.usage.events.",
        lambda s: s.consumer.stats.records,
    ),
    (
        "usage_events_applied_total",
        "counter",
        "Usage events applied to ledger and aggregates.",
        lambda s: s.consumer.stats.applied,
    ),
    (
        "usage_events_duplicate_total",
        "counter",
        "Usage events whose id was already in the ledger (counted, never applied).",
        lambda s: s.consumer.stats.duplicates,
    ),
    (
        "usage_records_dead_lettered_total",
        "counter",
        "Records sent to ailab.usage.events.dlq.",
        lambda s: s.consumer.stats.dead_lettered,
    ),
    (
        "usage_aggregate_writes_total",
        "counter",
        "Aggregate sheets written (one document per tenant × period, all its meters).",
        lambda s: s.consumer.stats.aggregate_writes,
    ),
    (
        "usage_consumer_batches_total",
        "counter",
        "Consumer batches committed.",
        lambda s: s.consumer.stats.batches,
    ),
    (
        "usage_days_closed_total",
        "counter",
        "Days closed (usage.DailyUsageClosed published).",
        lambda s: s.closer.closed,
    ),
    (
        "usage_quota_events_total",
        "counter",
        "usage.QuotaStateChanged events published.",
        lambda s: s.quotas.published,
    ),
    (
        "usage_quota_evaluations_total",
        "counter",
        "Quota evaluations that read the tenant's limits, usage and states from the database.",
        lambda s: s.quotas.evaluations,
    ),
    (
        "usage_quota_checks_total",
        "counter",
        "Quota evaluations settled in memory (usage applied here against recent limits and states).",
        lambda s: s.quotas.checks,
    ),
]


@metrics.get(
    "/metrics",
    summary="This process's counters in the Prometheus text format (no authentication, like /healthz)",
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition format 0.0.4"}},
)
async def prometheus_metrics(request: Request) -> Response:
    services = _services(request)
    lines = []
    for name, kind, help_text, value in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value(services)}"]
    recent = services.consumer.stats.recent_lags.histogram()
    lines += [
        "# HELP usage_event_lag_seconds Event-to-aggregate lag of the events applied in the last 1-2 min.",
        "# TYPE usage_event_lag_seconds gauge",
    ]
    for quantile in ("0.5", "0.99"):
        value = recent.quantile_ms(float(quantile))
        if value is not None:
            lines.append(f'usage_event_lag_seconds{{quantile="{quantile}"}} {value / 1000}')
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


ROUTERS = [router, admin, metrics]
__all__ = ["GROUP_DIMENSIONS", "ROUTERS"]


@admin.post(
    "/v1/admin/usage/days/close",
    status_code=202,
    response_model=DayCloseOut,
    summary="Close a tenant's day now, before its late-arrival window ends (e.g. to invoice at once)",
    description="The day's totals become final and are published as `usage.DailyUsageClosed` (billing "
    "charges them) as soon as everything published before this request is applied. Usage of that day "
    "that still arrives later is counted in the usage views but not charged: reconciliation lists it.",
    responses={
        **ERRORS,
        403: {"model": ErrorResponse, "description": "Not a platform admin"},
        404: {"model": ErrorResponse, "description": "No usage recorded for the tenant on that day"},
    },
)
async def close_day_early(caller: Caller, request: Request, body: DayCloseRequest) -> DayCloseOut:
    _require_admin(caller)
    day = _parse_day(body.day, "day")
    if day > datetime.now(UTC).date():
        raise ApiError(
            422, "validation_error", "a day in the future cannot be closed", [{"loc": ["body", "day"]}]
        )
    views = _services(request).views
    found = await views.day(body.tenant_id, body.day)
    if found is None:
        raise ApiError(404, "not_found", f"no usage recorded for tenant {body.tenant_id} on {body.day}")
    if found.get("closed"):
        return DayCloseOut(tenant_id=body.tenant_id, day=body.day, status="closed")
    await views.request_close(body.tenant_id, body.day, datetime.now(UTC), caller.principal_id)
    return DayCloseOut(tenant_id=body.tenant_id, day=body.day, status="requested")
