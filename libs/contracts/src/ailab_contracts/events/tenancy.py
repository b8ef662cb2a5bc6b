"""Events of the tenancy context (published by the gateway on `ailab.tenancy.events`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Plan = Literal["free", "pro", "enterprise"]
Role = Literal["platform_admin", "tenant_admin", "developer", "analyst", "observer"]
TenantStatus = Literal["active", "suspended", "pending_setup"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TenantLimits(_Event):
    max_users: int = Field(description="-1 means unlimited", examples=[10])
    max_projects: int = Field(examples=[50])
    max_requests_per_month: int = Field(examples=[50000])
    max_tokens_per_month: int = Field(examples=[2000000])
    max_storage_gb: float = Field(examples=[10])
    enabled_features: list[str] = Field(default_factory=list, examples=[["agents", "experiments"]])


class TenantCreated(_Event):
    tenant_id: str = Field(examples=["acme"])
    name: str = Field(examples=["Acme Corp"])
    domain: str | None = Field(default=None, examples=["acme.example"])
    plan: Plan = Field(examples=["pro"])
    limits: TenantLimits
    status: TenantStatus = "active"
    created_by: str = Field(description="User id of the creator.", examples=["usr_platform_admin"])


class TenantUpdated(_Event):
    tenant_id: str
    name: str | None = None
    domain: str | None = None
    plan: Plan | None = None
    limits: TenantLimits | None = None
    status: TenantStatus | None = None
    updated_by: str


class UserInvited(_Event):
    user_id: str = Field(examples=["usr_8f2c"])
    email: str = Field(examples=["dev@acme.example"])
    role: Role = Field(examples=["developer"])
    invited_by: str


class UserJoined(_Event):
    """The invited user accepted the invite and set a password (the hash is never in an event)."""

    user_id: str
    email: str


class UserRemoved(_Event):
    user_id: str
    removed_by: str


class ApiKeyCreated(_Event):
    key_id: str = Field(examples=["key_2b1f"])
    name: str
    prefix: str = Field(description="First characters of the key, for display.", examples=["ailab_k_2b1f"])
    role: Role
    created_by: str


class ApiKeyRevoked(_Event):
    key_id: str
    revoked_by: str


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("tenancy.TenantCreated", 1, TenantCreated),
    ("tenancy.TenantUpdated", 1, TenantUpdated),
    ("tenancy.UserInvited", 1, UserInvited),
    ("tenancy.UserJoined", 1, UserJoined),
    ("tenancy.UserRemoved", 1, UserRemoved),
    ("tenancy.ApiKeyCreated", 1, ApiKeyCreated),
    ("tenancy.ApiKeyRevoked", 1, ApiKeyRevoked),
]
