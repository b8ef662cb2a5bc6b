"""Issue and verify bearer tokens: our own ES256 JWTs, external OIDC JWTs (via JWKS), and API keys."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from ailab_contracts.plans import PLAN_LIMITS

from ..adapters.signing_keys import SigningKey
from ..config import Settings
from ..domain.roles import Role, permissions_for

API_KEY_PREFIX = "ailab_k_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: from a JWT (ours or an OIDC issuer's) or a tenant API key."""

    subject: str
    tenant_id: str
    role: str
    email: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)
    via: str = "jwt"  # jwt | oidc | api_key

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN


class InvalidToken(Exception):
    pass


def plan_limits_claim(plan: str, limits: dict[str, Any] | None) -> dict[str, Any]:
    source = limits or PLAN_LIMITS.get(plan, PLAN_LIMITS["free"]).model_dump()
    return {
        "max_requests_per_month": source["max_requests_per_month"],
        "max_tokens_per_month": source["max_tokens_per_month"],
        "max_storage_gb": source["max_storage_gb"],
        "enabled_features": source.get("enabled_features", []),
    }


class TokenService:
    def __init__(self, settings: Settings, key: SigningKey) -> None:
        self._settings = settings
        self._key = key
        self._jwks_client = jwt.PyJWKClient(settings.oidc_jwks_url) if settings.oidc_jwks_url else None

    def issue(
        self, *, user_id: str, email: str, tenant_id: str, role: str, plan: str, limits: dict[str, Any] | None
    ) -> tuple[str, int]:
        now = int(time.time())
        ttl = self._settings.access_token_ttl_s
        claims = {
            "iss": self._settings.jwt_issuer,
            "aud": self._settings.jwt_audience,
            "sub": user_id,
            "email": email,
            "tenant_id": tenant_id,
            "role": role,
            "permissions": sorted(p.value for p in permissions_for(role)),
            "plan_limits": plan_limits_claim(plan, limits),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self._key.private_key, algorithm="ES256", headers={"kid": self._key.kid})
        return token, ttl

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.jwk()]}

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("kid") == self._key.kid:
            return self._verify_own(token)
        if self._jwks_client is not None:
            return await self._verify_oidc(token)
        raise InvalidToken("token was not issued by a trusted issuer")

    def _verify_own(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key.public_key,
                algorithms=["ES256"],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        return _principal_from_claims(claims, via="jwt")

    async def _verify_oidc(self, token: str) -> Principal:
        assert self._jwks_client is not None
        try:
            signing_key = await asyncio.to_thread(self._jwks_client.get_signing_key_from_jwt, token)
            options: dict[str, Any] = {
                "require": ["exp", "sub"],
                "verify_aud": bool(self._settings.oidc_audience),
            }
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=["RS256", "ES256"],
                audience=self._settings.oidc_audience,
                issuer=self._settings.oidc_issuer,
                options=options,
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise InvalidToken(str(exc)) from exc
        return _principal_from_claims(claims, via="oidc")


def _principal_from_claims(claims: dict[str, Any], via: str) -> Principal:
    # External issuers (e.g. Cognito) carry tenant and role as custom attributes.
    tenant = claims.get("tenant_id") or claims.get("custom:tenant_id")
    role = claims.get("role") or claims.get("custom:role")
    if not tenant or role not in {r.value for r in Role}:
        raise InvalidToken("token lacks tenant_id or a known role")
    return Principal(
        subject=str(claims["sub"]),
        tenant_id=str(tenant),
        role=str(role),
        email=claims.get("email"),
        permissions=frozenset(p.value for p in permissions_for(str(role))),
        via=via,
    )


def new_api_key() -> tuple[str, str, str]:
    """Returns (key_id, full secret key shown once, display prefix)."""
    key_id = secrets.token_hex(6)
    secret = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key_id, secret, secret[: len(API_KEY_PREFIX) + 12]


def hash_api_key(secret: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough (passwords use argon2).
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_id(secret: str) -> str | None:
    if not secret.startswith(API_KEY_PREFIX):
        return None
    rest = secret[len(API_KEY_PREFIX) :]
    key_id, sep, _ = rest.partition("_")
    return key_id if sep and key_id else None
