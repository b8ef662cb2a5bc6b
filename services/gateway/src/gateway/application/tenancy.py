"""Commands of the tenancy context: tenants, users and invites, API keys, sign-in."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ailab_contracts.events import tenancy as ev
from ailab_contracts.plans import PLAN_LIMITS
from ailab_runtime.errors import ApiError, not_found
from ailab_runtime.ids import new_id
from ailab_runtime.preconditions import IfMatch
from ailab_runtime.service import Runtime

from ..adapters.passwords import hash_password, verify_password
from ..config import Settings
from ..domain.roles import Role
from .tokens import Principal, TokenService, hash_api_key, new_api_key

TENANT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


def tenant_stream(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def user_stream(tenant_id: str, user_id: str) -> str:
    return f"user:{tenant_id}:{user_id}"


def api_key_stream(tenant_id: str, key_id: str) -> str:
    return f"apikey:{tenant_id}:{key_id}"


class TenancyService:
    def __init__(self, runtime: Runtime, tokens: TokenService, settings: Settings) -> None:
        self.rt = runtime
        self.tokens = tokens
        self.settings = settings
        db = runtime.db
        self.tenants = db["tenants"]
        self.users = db["users"]
        self.api_keys = db["api_keys"]
        self.credentials = db["credentials"]  # _id = lower-cased email; password hash lives only here
        self.invites = db["invites"]  # _id = sha256 of the invite token
        self.api_key_secrets = db["api_key_secrets"]  # _id = key id; sha256 of the key

    # --- tenants ------------------------------------------------------------------------------
    async def get_tenant(self, tenant_id: str) -> dict[str, Any] | None:
        return await self.tenants.find_one({"_id": tenant_id})

    async def create_tenant(
        self,
        *,
        tenant_id: str | None,
        name: str,
        domain: str | None,
        plan: str,
        limits: ev.TenantLimits | None,
        status: str,
        actor: str,
    ) -> dict[str, Any]:
        tenant_id = tenant_id or new_id("tnt").replace("_", "-")
        if not TENANT_ID_RE.match(tenant_id):
            raise ApiError(
                422,
                "validation_error",
                "tenant_id must be 2-63 chars of a-z, 0-9 and '-'",
                [{"loc": ["body", "tenant_id"], "msg": "invalid tenant id"}],
            )
        event = ev.TenantCreated(
            tenant_id=tenant_id,
            name=name,
            domain=domain,
            plan=plan,  # type: ignore[arg-type]
            limits=limits or PLAN_LIMITS[plan],
            status=status,
            created_by=actor,
        )  # type: ignore[arg-type]
        try:
            await self.rt.record(
                stream_id=tenant_stream(tenant_id), expected_version=0, tenant_id=tenant_id, events=[event]
            )
        except ApiError as exc:
            if exc.status == 409:
                raise ApiError(409, "tenant_exists", f"tenant {tenant_id} already exists") from exc
            raise
        tenant = await self.get_tenant(tenant_id)
        assert tenant is not None
        return tenant

    async def update_tenant(
        self, tenant_id: str, changes: dict[str, Any], actor: str, if_match: IfMatch | None
    ) -> dict[str, Any]:
        if changes.get("plan") and "limits" not in changes:
            changes["limits"] = PLAN_LIMITS[changes["plan"]]
        event = ev.TenantUpdated(tenant_id=tenant_id, updated_by=actor, **changes)
        # Without If-Match the caller does not pin a version: a concurrent update (e.g. billing's
        # decision applied by the consumer) is not a conflict for it, so it is retried on top.
        attempts = 1 if if_match is not None else 5
        for attempt in range(1, attempts + 1):
            tenant = await self.get_tenant(tenant_id)
            if tenant is None:
                raise not_found("tenant", tenant_id)
            check_if_match(if_match, tenant["_version"])
            try:
                await self.rt.record(
                    stream_id=tenant_stream(tenant_id),
                    expected_version=tenant["_version"],
                    tenant_id=tenant_id,
                    events=[event],
                )
                break
            except ApiError as exc:
                if exc.status != 409 or attempt == attempts:
                    raise
        updated = await self.get_tenant(tenant_id)
        assert updated is not None
        return updated

    # --- users --------------------------------------------------------------------------------
    async def invite_user(
        self, tenant_id: str, email: str, role: str, actor: str
    ) -> tuple[dict[str, Any], str]:
        email = email.strip().lower()
        tenant = await self.get_tenant(tenant_id)
        assert tenant is not None
        limit = tenant["limits"]["max_users"]
        if (
            limit != -1
            and await self.users.count_documents({"tenant_id": tenant_id, "status": {"$ne": "removed"}})
            >= limit
        ):
            raise ApiError(
                409,
                "user_limit_reached",
                f"plan allows {limit} users",
                {"limit": limit, "plan": tenant["plan"]},
            )
        user_id = new_id("usr")
        try:
            await self.credentials.insert_one(
                {"_id": email, "user_id": user_id, "tenant_id": tenant_id, "password_hash": None}
            )
        except DuplicateKeyError:
            raise ApiError(409, "email_taken", f"{email} already belongs to a user") from None
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.invite_ttl_s)
        try:
            await self.invites.insert_one(
                {
                    "_id": _sha(token),
                    "user_id": user_id,
                    "tenant_id": tenant_id,
                    "email": email,
                    "expires_at": expires,
                    "used": False,
                }
            )
            await self.rt.record(
                stream_id=user_stream(tenant_id, user_id),
                expected_version=0,
                tenant_id=tenant_id,
                events=[
                    ev.UserInvited(
                        user_id=user_id,
                        email=email,
                        role=role,  # type: ignore[arg-type]
                        invited_by=actor,
                    )
                ],
            )
        except BaseException:
            await self.credentials.delete_one({"_id": email, "user_id": user_id})
            await self.invites.delete_one({"_id": _sha(token)})
            raise
        user = await self.users.find_one({"_id": user_id})
        assert user is not None
        return {**user, "invite_expires_at": expires}, token

    async def create_active_user(
        self, tenant_id: str, email: str, role: str, password: str, actor: str
    ) -> str:
        """Used by migrations: invite and accept in one go."""
        _, token = await self.invite_user(tenant_id, email, role, actor)
        user = await self.accept_invite(token, password)
        return str(user["_id"])

    async def accept_invite(self, token: str, password: str) -> dict[str, Any]:
        invite = await self.invites.find_one_and_update(
            {"_id": _sha(token), "used": False, "expires_at": {"$gt": datetime.now(UTC)}},
            {"$set": {"used": True}},
            return_document=ReturnDocument.AFTER,
        )
        if invite is None:
            raise ApiError(400, "invalid_invite", "the invite token is unknown, used or expired")
        await self.credentials.update_one(
            {"_id": invite["email"], "user_id": invite["user_id"]},
            {"$set": {"password_hash": await hash_password(password)}},
        )
        user = await self.users.find_one({"_id": invite["user_id"]})
        assert user is not None
        await self.rt.record(
            stream_id=user_stream(invite["tenant_id"], user["_id"]),
            expected_version=user["_version"],
            tenant_id=invite["tenant_id"],
            events=[ev.UserJoined(user_id=user["_id"], email=invite["email"])],
        )
        joined = await self.users.find_one({"_id": invite["user_id"]})
        assert joined is not None
        return joined

    async def remove_user(self, tenant_id: str, user_id: str, actor: str) -> None:
        user = await self.users.find_one(
            {"_id": user_id, "tenant_id": tenant_id, "status": {"$ne": "removed"}}
        )
        if user is None:
            raise not_found("user", user_id)
        if user_id == actor:
            raise ApiError(409, "cannot_remove_self", "you cannot remove yourself")
        await self.rt.record(
            stream_id=user_stream(tenant_id, user_id),
            expected_version=user["_version"],
            tenant_id=tenant_id,
            events=[ev.UserRemoved(user_id=user_id, removed_by=actor)],
        )
        await self.credentials.delete_one({"_id": user["email"], "user_id": user_id})

    async def sign_in(self, email: str, password: str) -> tuple[str, int]:
        cred = await self.credentials.find_one({"_id": email.strip().lower()})
        ok = await verify_password(cred["password_hash"] if cred else None, password)
        user = await self.users.find_one({"_id": cred["user_id"]}) if cred and ok else None
        if user is None or user["status"] != "active":
            raise ApiError(401, "invalid_credentials", "email or password is wrong")
        tenant = await self.get_tenant(user["tenant_id"])
        plan, limits = (tenant["plan"], tenant["limits"]) if tenant else ("free", None)
        return self.tokens.issue(
            user_id=user["_id"],
            email=user["email"],
            tenant_id=user["tenant_id"],
            role=user["role"],
            plan=plan,
            limits=limits,
        )

    # --- API keys -----------------------------------------------------------------------------
    async def create_api_key(
        self, tenant_id: str, name: str, role: str, actor: str
    ) -> tuple[dict[str, Any], str]:
        if role == Role.PLATFORM_ADMIN:
            raise ApiError(422, "validation_error", "API keys cannot carry the platform_admin role")
        key_id, secret, prefix = new_api_key()
        await self.api_key_secrets.insert_one(
            {"_id": key_id, "tenant_id": tenant_id, "hash": hash_api_key(secret)}
        )
        try:
            await self.rt.record(
                stream_id=api_key_stream(tenant_id, key_id),
                expected_version=0,
                tenant_id=tenant_id,
                events=[
                    ev.ApiKeyCreated(
                        key_id=key_id,
                        name=name,
                        prefix=prefix,
                        role=role,  # type: ignore[arg-type]
                        created_by=actor,
                    )
                ],
            )
        except BaseException:
            await self.api_key_secrets.delete_one({"_id": key_id})
            raise
        key = await self.api_keys.find_one({"_id": key_id})
        assert key is not None
        return key, secret

    async def revoke_api_key(self, tenant_id: str, key_id: str, actor: str) -> None:
        key = await self.api_keys.find_one({"_id": key_id, "tenant_id": tenant_id, "status": "active"})
        if key is None:
            raise not_found("api key", key_id)
        await self.api_key_secrets.delete_one({"_id": key_id})  # refuse the key at once
        await self.rt.record(
            stream_id=api_key_stream(tenant_id, key_id),
            expected_version=key["_version"],
            tenant_id=tenant_id,
            events=[ev.ApiKeyRevoked(key_id=key_id, revoked_by=actor)],
        )

    async def principal_for_api_key(self, key_id: str, secret: str) -> Principal | None:
        stored = await self.api_key_secrets.find_one({"_id": key_id})
        if stored is None or not secrets.compare_digest(stored["hash"], hash_api_key(secret)):
            return None
        key = await self.api_keys.find_one({"_id": key_id, "status": "active"})
        if key is None:
            return None
        from ..domain.roles import permissions_for

        return Principal(
            subject=f"apikey:{key_id}",
            tenant_id=key["tenant_id"],
            role=key["role"],
            permissions=frozenset(p.value for p in permissions_for(key["role"])),
            via="api_key",
        )


def check_if_match(if_match: IfMatch | None, current: int) -> None:
    if if_match is not None and not if_match.matches(current):
        raise ApiError(
            412,
            "precondition_failed",
            "If-Match does not match the current version",
            {"current_etag": f'"{current}"'},
        )


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
