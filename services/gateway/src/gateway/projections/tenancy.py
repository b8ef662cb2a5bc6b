"""Read models of the tenancy context: tenants, users and API keys (metadata only, no secrets)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import EventEnvelope
from ailab_contracts.events import tenancy as ev
from ailab_runtime.mongo_server import delete_matching
from ailab_runtime.views import apply_versioned


class TenantsView:
    name = "tenants"

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.col = db["tenants"]

    async def reset(self) -> None:
        await delete_matching(self.col, {})

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        v, at = envelope.stream_version, envelope.occurred_at
        if isinstance(event, ev.TenantCreated):
            await apply_versioned(
                self.col,
                event.tenant_id,
                v,
                {
                    "tenant_id": event.tenant_id,
                    "name": event.name,
                    "domain": event.domain,
                    "plan": event.plan,
                    "limits": event.limits.model_dump(),
                    "status": event.status,
                    "created_by": event.created_by,
                    "created_at": at,
                    "updated_at": at,
                },
            )
        elif isinstance(event, ev.TenantUpdated):
            changes = event.model_dump(exclude_none=True, exclude={"tenant_id", "updated_by"})
            await apply_versioned(self.col, event.tenant_id, v, {**changes, "updated_at": at})


class UsersView:
    name = "users"

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.col = db["users"]

    async def reset(self) -> None:
        await delete_matching(self.col, {})

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        v, at = envelope.stream_version, envelope.occurred_at
        if isinstance(event, ev.UserInvited):
            await apply_versioned(
                self.col,
                event.user_id,
                v,
                {
                    "tenant_id": envelope.tenant_id,
                    "email": event.email,
                    "role": event.role,
                    "status": "invited",
                    "invited_by": event.invited_by,
                    "created_at": at,
                    "updated_at": at,
                },
            )
        elif isinstance(event, ev.UserJoined):
            await apply_versioned(self.col, event.user_id, v, {"status": "active", "updated_at": at})
        elif isinstance(event, ev.UserRemoved):
            await apply_versioned(self.col, event.user_id, v, {"status": "removed", "updated_at": at})


class ApiKeysView:
    name = "api_keys"

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.col = db["api_keys"]

    async def reset(self) -> None:
        await delete_matching(self.col, {})

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        v, at = envelope.stream_version, envelope.occurred_at
        if isinstance(event, ev.ApiKeyCreated):
            await apply_versioned(
                self.col,
                event.key_id,
                v,
                {
                    "tenant_id": envelope.tenant_id,
                    "name": event.name,
                    "prefix": event.prefix,
                    "role": event.role,
                    "status": "active",
                    "created_by": event.created_by,
                    "created_at": at,
                    "revoked_at": None,
                },
            )
        elif isinstance(event, ev.ApiKeyRevoked):
            await apply_versioned(self.col, event.key_id, v, {"status": "revoked", "revoked_at": at})


def tenancy_views(db: AsyncDatabase[dict[str, Any]]) -> list[Any]:
    return [TenantsView(db), UsersView(db), ApiKeysView(db)]
