"""FastAPI dependencies: who is calling, and may they do this on this tenant."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ailab_runtime.context import tenant_id_var, user_id_var
from ailab_runtime.errors import ApiError

from ..application.tenancy import TenancyService
from ..application.tokens import InvalidToken, Principal, TokenService, api_key_id
from ..domain.roles import Permission

bearer = HTTPBearer(
    auto_error=False, description="A JWT from POST /v1/auth/token, an OIDC JWT, or an API key"
)


def tenancy_service(request: Request) -> TenancyService:
    return request.app.state.tenancy  # type: ignore[no-any-return]


def token_service(request: Request) -> TokenService:
    return request.app.state.tokens  # type: ignore[no-any-return]


Tenancy = Annotated[TenancyService, Depends(tenancy_service)]
Tokens = Annotated[TokenService, Depends(token_service)]


async def current_principal(
    request: Request,
    tenancy: Tenancy,
    tokens: Tokens,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    raw = credentials.credentials if credentials else request.headers.get("x-api-key")
    if not raw:
        raise ApiError(401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    key_id = api_key_id(raw)
    if key_id is not None:
        principal = await tenancy.principal_for_api_key(key_id, raw)
        if principal is None:
            raise ApiError(401, "invalid_api_key", "API key is unknown or revoked")
    else:
        try:
            principal = await tokens.verify(raw)
        except InvalidToken as exc:
            raise ApiError(
                401,
                "invalid_token",
                f"token rejected: {exc}",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from exc
    request.state.principal = principal
    user_id_var.set(principal.subject)
    tenant_id_var.set(principal.tenant_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency: the caller holds `permission` (tenant checks are done by `tenant_scope`)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if permission.value not in principal.permissions:
            raise ApiError(
                403,
                "forbidden",
                f"role {principal.role} lacks permission {permission.value}",
                {"required_permission": permission.value, "role": principal.role},
            )
        return principal

    return check


def tenant_scope(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency for /v1/tenants/{tenant_id}/...: permission, same tenant, tenant exists and is active."""

    async def check(
        tenant_id: str,
        request: Request,
        tenancy: Tenancy,
        principal: Annotated[Principal, Depends(require(permission))],
    ) -> Principal:
        # Checked before existence so that other tenants' ids are not revealed.
        if not principal.is_platform_admin and principal.tenant_id != tenant_id:
            raise ApiError(403, "tenant_mismatch", "token is not valid for this tenant")
        tenant = await tenancy.get_tenant(tenant_id)
        if tenant is None:
            raise ApiError(404, "tenant_not_found", f"tenant {tenant_id} not found")
        if tenant["status"] == "suspended" and not principal.is_platform_admin:
            raise ApiError(403, "tenant_suspended", f"tenant {tenant_id} is suspended")
        tenant_id_var.set(tenant_id)
        request.state.tenant = tenant
        return principal

    return check
