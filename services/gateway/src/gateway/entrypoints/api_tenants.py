"""Tenant routes: settings, users and invites, API keys, audit trail; and the admin tenant routes."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from ailab_runtime.errors import ApiError, ErrorResponse, not_found
from ailab_runtime.pagination import MAX_LIMIT, keyset_page
from ailab_runtime.preconditions import etag, parse_if_match

from ..application.tenancy import TenancyService
from ..application.tokens import Principal
from ..domain.roles import INVITABLE_BY_TENANT_ADMIN, Permission, Role
from .deps import Tenancy, require, tenant_scope
from .schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyPage,
    AuditOut,
    AuditPage,
    InviteOut,
    InviteRequest,
    TenantAdminCreate,
    TenantAdminUpdate,
    TenantOut,
    TenantPage,
    TenantSelfUpdate,
    UserOut,
    UserPage,
)

router = APIRouter(tags=["tenants"])

# Billing learns a new tenant from its TenantCreated event, a moment after it was created.
BILLING_KNOWS_TENANT_WITHIN_S = 10.0
admin_router = APIRouter(tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
}
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
IfMatch = Annotated[str | None, Header(description='ETag from a previous read, e.g. "3"')]


async def tenant_out(tenancy: TenancyService, doc: dict[str, Any]) -> TenantOut:
    users = await tenancy.users.count_documents({"tenant_id": doc["_id"], "status": {"$ne": "removed"}})
    projects = await tenancy.rt.db["tenant_projects"].count_documents({"tenant_id": doc["_id"]})
    return TenantOut(**doc, current_usage={"users": users, "projects": projects})


def user_out(doc: dict[str, Any]) -> UserOut:
    return UserOut(user_id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})


def api_key_out(doc: dict[str, Any]) -> ApiKeyOut:
    return ApiKeyOut(key_id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})


def _etag(response: Response, doc: dict[str, Any]) -> None:
    response.headers["ETag"] = etag(doc["_version"])


# --- tenant self-service ----------------------------------------------------------------------
@router.get(
    "/v1/tenants", response_model=TenantPage, summary="List the tenants you belong to", responses=ERRORS
)
async def list_tenants(
    principal: Annotated[Principal, Depends(require(Permission.TENANT_READ))],
    tenancy: Tenancy,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TenantPage:
    query: dict[str, Any] = {} if principal.is_platform_admin else {"_id": principal.tenant_id}
    docs, next_cursor = await keyset_page(tenancy.tenants, query, cursor, limit)
    return TenantPage(items=[await tenant_out(tenancy, d) for d in docs], next_cursor=next_cursor)


@router.get(
    "/v1/tenants/{tenant_id}", response_model=TenantOut, summary="Get tenant details", responses=ERRORS
)
async def get_tenant(
    tenant_id: str,
    request: Request,
    response: Response,
    tenancy: Tenancy,
    _: Annotated[Principal, Depends(tenant_scope(Permission.TENANT_READ))],
) -> TenantOut:
    _etag(response, request.state.tenant)
    return await tenant_out(tenancy, request.state.tenant)


@router.put(
    "/v1/tenants/{tenant_id}",
    response_model=TenantOut,
    summary="Update tenant settings",
    responses={**ERRORS, 412: {"model": ErrorResponse}},
)
async def update_tenant(
    tenant_id: str,
    body: TenantSelfUpdate,
    response: Response,
    tenancy: Tenancy,
    principal: Annotated[Principal, Depends(tenant_scope(Permission.TENANT_WRITE))],
    if_match: IfMatch = None,
) -> TenantOut:
    doc = await tenancy.update_tenant(
        tenant_id, body.model_dump(exclude_none=True), principal.subject, parse_if_match(if_match)
    )
    _etag(response, doc)
    return await tenant_out(tenancy, doc)


# --- users ------------------------------------------------------------------------------------
@router.post(
    "/v1/tenants/{tenant_id}/users/invite",
    response_model=InviteOut,
    status_code=201,
    summary="Invite a user (the invite token is returned once)",
    responses={**ERRORS, 409: {"model": ErrorResponse}},
)
async def invite_user(
    tenant_id: str,
    body: InviteRequest,
    tenancy: Tenancy,
    principal: Annotated[Principal, Depends(tenant_scope(Permission.USERS_MANAGE))],
) -> InviteOut:
    if not principal.is_platform_admin and Role(body.role) not in INVITABLE_BY_TENANT_ADMIN:
        raise ApiError(403, "forbidden", f"{principal.role} cannot grant role {body.role}")
    user, token = await tenancy.invite_user(tenant_id, body.email, body.role, principal.subject)
    return InviteOut(
        **user_out(user).model_dump(), invite_token=token, invite_expires_at=user["invite_expires_at"]
    )


@router.get(
    "/v1/tenants/{tenant_id}/users",
    response_model=UserPage,
    summary="List users of the tenant",
    responses=ERRORS,
)
async def list_users(
    tenant_id: str,
    tenancy: Tenancy,
    _: Annotated[Principal, Depends(tenant_scope(Permission.USERS_READ))],
    limit: Limit = 50,
    cursor: Cursor = None,
) -> UserPage:
    docs, nxt = await keyset_page(
        tenancy.users, {"tenant_id": tenant_id, "status": {"$ne": "removed"}}, cursor, limit
    )
    return UserPage(items=[user_out(d) for d in docs], next_cursor=nxt)


@router.delete(
    "/v1/tenants/{tenant_id}/users/{user_id}",
    status_code=204,
    summary="Remove a user",
    responses={**ERRORS, 409: {"model": ErrorResponse}},
)
async def remove_user(
    tenant_id: str,
    user_id: str,
    tenancy: Tenancy,
    principal: Annotated[Principal, Depends(tenant_scope(Permission.USERS_MANAGE))],
) -> Response:
    await tenancy.remove_user(tenant_id, user_id, principal.subject)
    return Response(status_code=204)


# --- API keys ---------------------------------------------------------------------------------
@router.post(
    "/v1/tenants/{tenant_id}/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    summary="Create an API key (the key is shown once)",
    responses=ERRORS,
)
async def create_api_key(
    tenant_id: str,
    body: ApiKeyCreate,
    tenancy: Tenancy,
    principal: Annotated[Principal, Depends(tenant_scope(Permission.API_KEYS_MANAGE))],
) -> ApiKeyCreated:
    key, secret = await tenancy.create_api_key(tenant_id, body.name, body.role, principal.subject)
    return ApiKeyCreated(**api_key_out(key).model_dump(), api_key=secret)


@router.get(
    "/v1/tenants/{tenant_id}/api-keys", response_model=ApiKeyPage, summary="List API keys", responses=ERRORS
)
async def list_api_keys(
    tenant_id: str,
    tenancy: Tenancy,
    _: Annotated[Principal, Depends(tenant_scope(Permission.API_KEYS_MANAGE))],
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ApiKeyPage:
    docs, nxt = await keyset_page(tenancy.api_keys, {"tenant_id": tenant_id}, cursor, limit)
    return ApiKeyPage(items=[api_key_out(d) for d in docs], next_cursor=nxt)


@router.delete(
    "/v1/tenants/{tenant_id}/api-keys/{key_id}",
    status_code=204,
    summary="Revoke an API key",
    responses=ERRORS,
)
async def revoke_api_key(
    tenant_id: str,
    key_id: str,
    tenancy: Tenancy,
    principal: Annotated[Principal, Depends(tenant_scope(Permission.API_KEYS_MANAGE))],
) -> Response:
    await tenancy.revoke_api_key(tenant_id, key_id, principal.subject)
    return Response(status_code=204)


# --- audit ------------------------------------------------------------------------------------
@router.get(
    "/v1/tenants/{tenant_id}/audit",
    response_model=AuditPage,
    summary="Audit trail of mutating requests, oldest first",
    responses=ERRORS,
)
async def list_audit(
    tenant_id: str,
    tenancy: Tenancy,
    _: Annotated[Principal, Depends(tenant_scope(Permission.AUDIT_READ))],
    limit: Limit = 50,
    cursor: Cursor = None,
    result: Annotated[str | None, Query(pattern="^(success|failure)$")] = None,
    user_id: str | None = None,
) -> AuditPage:
    query: dict[str, Any] = {"tenant_id": tenant_id}
    if result:
        query["result"] = result
    if user_id:
        query["user_id"] = user_id
    docs, nxt = await keyset_page(tenancy.rt.db["audit"], query, cursor, limit)
    return AuditPage(
        items=[AuditOut(**{k: v for k, v in d.items() if k != "_id"}) for d in docs], next_cursor=nxt
    )


# --- platform admin ---------------------------------------------------------------------------
AdminPrincipal = Annotated[Principal, Depends(require(Permission.ADMIN_TENANTS))]


@admin_router.get(
    "/v1/admin/tenants", response_model=TenantPage, summary="List all tenants", responses=ERRORS
)
async def admin_list_tenants(
    _: AdminPrincipal,
    tenancy: Tenancy,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: str | None = None,
    plan: str | None = None,
) -> TenantPage:
    query: dict[str, Any] = {}
    if status:
        query["status"] = status
    if plan:
        query["plan"] = plan
    docs, nxt = await keyset_page(tenancy.tenants, query, cursor, limit)
    return TenantPage(items=[await tenant_out(tenancy, d) for d in docs], next_cursor=nxt)


@admin_router.post(
    "/v1/admin/tenants",
    response_model=TenantOut,
    status_code=201,
    summary="Create a tenant",
    responses={**ERRORS, 409: {"model": ErrorResponse}},
)
async def admin_create_tenant(
    body: TenantAdminCreate, response: Response, principal: AdminPrincipal, tenancy: Tenancy
) -> TenantOut:
    doc = await tenancy.create_tenant(
        tenant_id=body.tenant_id,
        name=body.name,
        domain=body.domain,
        plan=body.plan,
        limits=body.limits,
        status=body.status,
        actor=principal.subject,
    )
    response.headers["Location"] = f"/v1/admin/tenants/{doc['_id']}"
    _etag(response, doc)
    return await tenant_out(tenancy, doc)


@admin_router.get(
    "/v1/admin/tenants/{tenant_id}", response_model=TenantOut, summary="Get any tenant", responses=ERRORS
)
async def admin_get_tenant(
    tenant_id: str, response: Response, _: AdminPrincipal, tenancy: Tenancy
) -> TenantOut:
    doc = await tenancy.get_tenant(tenant_id)
    if doc is None:
        raise not_found("tenant", tenant_id)
    _etag(response, doc)
    return await tenant_out(tenancy, doc)


@admin_router.put(
    "/v1/admin/tenants/{tenant_id}",
    response_model=TenantOut,
    summary="Update any tenant: plan, limits, status (suspend/reactivate)",
    responses={**ERRORS, 412: {"model": ErrorResponse}},
)
async def admin_update_tenant(
    tenant_id: str,
    body: TenantAdminUpdate,
    request: Request,
    response: Response,
    principal: AdminPrincipal,
    tenancy: Tenancy,
    if_match: IfMatch = None,
) -> TenantOut:
    changes = body.model_dump(exclude_none=True)
    current = await tenancy.get_tenant(tenant_id)
    if current is None:
        raise not_found("tenant", tenant_id)
    if body.plan is not None and body.plan != current["plan"]:
        # Billing owns plans (Stripe subscription, downgrade checks, invoices): it decides first.
        await change_plan_in_billing(request, principal, tenant_id, body.plan)
    doc = await tenancy.update_tenant(tenant_id, changes, principal.subject, parse_if_match(if_match))
    _etag(response, doc)
    return await tenant_out(tenancy, doc)


async def change_plan_in_billing(request: Request, principal: Principal, tenant_id: str, plan: str) -> None:
    """`PUT .../billing/plan` on billing; its refusal (e.g. a downgrade over limits) is the answer."""
    billing = request.app.state.upstreams["billing"]
    deadline = time.monotonic() + BILLING_KNOWS_TENANT_WITHIN_S
    while True:
        reply = await billing.call("PUT", f"/v1/tenants/{tenant_id}/billing/plan", principal, {"plan": plan})
        if reply.status_code != 404 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # billing has not consumed the tenant's creation yet
    if reply.status_code >= 400:
        try:
            error = reply.json()["error"]
        except (ValueError, KeyError, TypeError):
            error = {"code": "billing_error", "message": f"billing answered {reply.status_code}"}
        raise ApiError(reply.status_code, error["code"], error["message"], error.get("details"))
