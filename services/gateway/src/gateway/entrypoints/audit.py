"""Audit trail: one record per mutating request (who, tenant, action, resource, result, ip, agent)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response

from ailab_runtime.context import request_id_var
from ailab_runtime.ids import new_id

log = logging.getLogger(__name__)

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def audit_record(request: Request, response: Response) -> dict[str, Any]:
    route = request.scope.get("route")
    template: str = getattr(route, "path", request.url.path)
    params: dict[str, str] = dict(request.scope.get("path_params") or {})
    principal = getattr(request.state, "principal", None)
    tenant_id = params.get("tenant_id") or (principal.tenant_id if principal else None)
    segments = [s for s in template.strip("/").split("/") if s]
    literal = [s for s in segments if not s.startswith("{")]
    resource_type = literal[-1] if literal else None
    ids = [v for k, v in params.items() if k != "tenant_id"]
    resource_id = ids[-1] if ids else None
    location = response.headers.get("location")
    if resource_id is None and location:
        resource_id = location.rstrip("/").rsplit("/", 1)[-1]
    client = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    event_id = new_id("aud")
    return {
        "_id": event_id,
        "event_id": event_id,
        "tenant_id": tenant_id,
        "user_id": principal.subject if principal else None,
        "action": f"{request.method} {template}",
        "resource_type": resource_type,
        "resource_id": resource_id,
        "timestamp": datetime.now(UTC),
        "source_ip": forwarded.split(",")[0].strip() if forwarded else client,
        "user_agent": request.headers.get("user-agent"),
        "result": "success" if response.status_code < 400 else "failure",
        "status_code": response.status_code,
        "request_id": request_id_var.get(),
        "details": {"via": principal.via} if principal else {},
    }


def install_audit(app: FastAPI) -> None:
    @app.middleware("http")
    async def audit(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.method in MUTATING and request.url.path.startswith(("/v1/", "/webhooks/")):
            try:
                await app.state.runtime.db["audit"].insert_one(audit_record(request, response))
            except Exception:  # noqa: BLE001 - the request already happened; losing an audit row is logged
                log.exception("audit record not stored")
        return response
