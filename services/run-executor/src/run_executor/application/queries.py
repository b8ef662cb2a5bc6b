"""Reads of the runs API: runs, their log lines and their span tree (tenant-scoped, deleted hidden)."""

from __future__ import annotations

from typing import Any

from ..domain.errors import RunNotFound
from ..domain.model import Run
from .handlers import RunPorts
from .ports import RunFilter

MAX_SPANS = 5000


async def get_run(ports: RunPorts, tenant_id: str, run_id: str) -> Run:
    run = await ports.views.get(tenant_id, run_id)
    if run is None or run.deleted:
        raise RunNotFound(f"run {run_id} not found")
    return run


async def list_runs(ports: RunPorts, tenant_id: str, flt: RunFilter) -> tuple[list[Run], str | None]:
    return await ports.views.list(tenant_id, flt)


async def run_logs(
    ports: RunPorts, tenant_id: str, run_id: str, cursor: str | None, limit: int, level: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    await get_run(ports, tenant_id, run_id)
    return await ports.logs.page(tenant_id, run_id, cursor, limit, level)


def span_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest spans under their parents (children by start time); spans whose parent is not stored
    (yet: the root span of a running run is written when it ends) are roots."""
    by_id = {s["span_id"]: {**s, "children": []} for s in spans}
    roots: list[dict[str, Any]] = []
    # `opened` (the order spans were started in) orders spans that started in the same millisecond
    ordered = sorted(by_id.values(), key=lambda s: (s["start_time"], s.get("opened", 0), s["span_id"]))
    for span in ordered:
        span.pop("opened", None)
        parent = by_id.get(span.get("parent_span_id") or "")
        (parent["children"] if parent is not None else roots).append(span)
    return roots


async def run_traces(ports: RunPorts, tenant_id: str, run_id: str) -> tuple[Run, list[dict[str, Any]], int]:
    run = await get_run(ports, tenant_id, run_id)
    spans = await ports.spans.of_run(tenant_id, run_id, MAX_SPANS)
    return run, span_tree(spans), len(spans)
