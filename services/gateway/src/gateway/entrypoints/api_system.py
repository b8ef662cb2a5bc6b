"""Platform health: the gateway's own dependencies and every service behind it."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..application.tokens import Principal
from ..domain.roles import Permission
from .deps import require

router = APIRouter(tags=["admin"])


@router.get(
    "/v1/admin/system/health",
    summary="Readiness of the gateway and every service",
    responses={503: {"description": "At least one component is not ready"}},
)
async def system_health(
    request: Request, _: Annotated[Principal, Depends(require(Permission.ADMIN_SYSTEM))]
) -> JSONResponse:
    upstreams = request.app.state.upstreams
    names = list(upstreams)
    results = await asyncio.gather(*(upstreams[n].ready() for n in names))
    gateway = await request.app.state.runtime.readiness()
    services: dict[str, Any] = {"gateway": {"ready": all(gateway.values()), "checks": gateway}}
    services.update({n: {"ready": ok} for n, ok in zip(names, results, strict=True)})
    healthy = all(s["ready"] for s in services.values())
    return JSONResponse(
        status_code=200 if healthy else 503,
        content={"status": "healthy" if healthy else "degraded", "services": services},
    )
