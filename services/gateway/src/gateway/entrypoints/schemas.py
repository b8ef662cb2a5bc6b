"""Request and response schemas of the gateway's own routes (one schema per purpose)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ailab_contracts.events.tenancy import TenantLimits

Plan = Literal["free", "pro", "enterprise"]
InvitableRole = Literal["tenant_admin", "developer", "analyst", "observer"]
AnyRole = Literal["platform_admin", "tenant_admin", "developer", "analyst", "observer"]
# Self-hosted teams use internal domains (.local, .internal), so only the shape is checked.
Email = Annotated[
    str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254, strip_whitespace=True, to_lower=True)
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(_In):
    email: Email = Field(examples=["demo-admin@ailab.local"])
    password: str = Field(min_length=1, max_length=1024, examples=["ailab-demo-dev"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the token expires.", examples=[3600])


class AcceptInvite(_In):
    token: str = Field(min_length=10, description="The invite token returned once by the invite call.")
    password: str = Field(min_length=10, max_length=1024, description="At least 10 characters.")


class CurrentUsage(BaseModel):
    users: int = 0
    projects: int = 0


class TenantOut(BaseModel):
    tenant_id: str = Field(examples=["demo"])
    name: str = Field(examples=["Demo Organization"])
    domain: str | None = None
    plan: Plan
    limits: TenantLimits
    status: Literal["active", "suspended", "pending_setup"]
    current_usage: CurrentUsage
    created_at: datetime
    updated_at: datetime


class TenantSelfUpdate(_In):
    """What a tenant admin may change; plan, limits and status are set by platform admins and billing."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=253)


class TenantAdminCreate(_In):
    tenant_id: str | None = Field(
        default=None, description="Slug; generated when omitted.", examples=["acme"]
    )
    name: str = Field(min_length=1, max_length=200, examples=["Acme Corp"])
    domain: str | None = Field(default=None, max_length=253)
    plan: Plan = "free"
    limits: TenantLimits | None = Field(default=None, description="Defaults to the plan's limits.")
    status: Literal["active", "pending_setup"] = "active"


class TenantAdminUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    domain: str | None = Field(default=None, max_length=253)
    plan: Plan | None = None
    limits: TenantLimits | None = None
    status: Literal["active", "suspended", "pending_setup"] | None = None


class InviteRequest(_In):
    email: Email = Field(examples=["dev@acme.example"])
    role: AnyRole = Field(default="developer", examples=["developer"])


class UserOut(BaseModel):
    user_id: str
    tenant_id: str
    email: str
    role: AnyRole
    status: Literal["invited", "active", "removed"]
    created_at: datetime
    updated_at: datetime


class InviteOut(UserOut):
    invite_token: str = Field(description="Shown once; the invitee sends it to POST /v1/auth/invites/accept.")
    invite_expires_at: datetime


class ApiKeyCreate(_In):
    name: str = Field(min_length=1, max_length=100, examples=["ci pipeline"])
    role: InvitableRole = Field(default="developer")


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    prefix: str = Field(description="First characters of the key, for recognising it.")
    role: str
    status: Literal["active", "revoked"]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="The secret key. Shown once; only its hash is stored.")


class AuditOut(BaseModel):
    event_id: str
    tenant_id: str | None
    user_id: str | None
    action: str = Field(examples=["POST /v1/tenants/{tenant_id}/projects"])
    resource_type: str | None
    resource_id: str | None
    timestamp: datetime
    source_ip: str | None
    user_agent: str | None
    result: Literal["success", "failure"]
    status_code: int
    request_id: str | None
    details: dict[str, Any] = Field(default_factory=dict)


class Page(BaseModel):
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


class TenantPage(Page):
    items: list[TenantOut]


class UserPage(Page):
    items: list[UserOut]


class ApiKeyPage(Page):
    items: list[ApiKeyOut]


class AuditPage(Page):
    items: list[AuditOut]
