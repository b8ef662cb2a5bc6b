"""Internal-service authentication: the gateway calls services with a shared service credential
and forwards who the caller is. Services behind the gateway trust only these headers."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from .context import tenant_id_var, user_id_var
from .errors import ApiError

INTERNAL_TOKEN_HEADER = "X-Internal-Token"
PRINCIPAL_HEADER = "X-Principal-Id"
ROLE_HEADER = "X-Principal-Role"


@dataclass(frozen=True)
class InternalCaller:
    principal_id: str
    role: str


async def internal_caller(
    request: Request,
    x_internal_token: Annotated[str | None, Header(alias=INTERNAL_TOKEN_HEADER)] = None,
    x_principal_id: Annotated[str | None, Header(alias=PRINCIPAL_HEADER)] = None,
    x_principal_role: Annotated[str | None, Header(alias=ROLE_HEADER)] = None,
) -> InternalCaller:
    # async, though it never awaits: FastAPI runs a plain `def` dependency in a worker thread, where
    # the context variables set below would not reach the request (and the hop costs each request).
    expected: str = request.app.state.settings.internal_token
    if not x_internal_token or not hmac.compare_digest(x_internal_token, expected):
        raise ApiError(401, "unauthorized", "missing or invalid internal service credential")
    user_id_var.set(x_principal_id)
    tenant = request.path_params.get("tenant_id")
    if tenant:
        tenant_id_var.set(tenant)
    return InternalCaller(principal_id=x_principal_id or "system", role=x_principal_role or "system")


Caller = Annotated[InternalCaller, Depends(internal_caller)]
