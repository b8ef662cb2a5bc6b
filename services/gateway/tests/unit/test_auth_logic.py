"""Pure logic of the gateway: roles, tokens, API keys, rate limiting."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from gateway.adapters.signing_keys import SigningKey
from gateway.application.rate_limit import SlidingWindowLimiter
from gateway.application.tokens import InvalidToken, TokenService, api_key_id, hash_api_key, new_api_key
from gateway.config import Settings
from gateway.domain.roles import PERMISSIONS, Permission, Role, matrix_markdown, permissions_for

pytestmark = pytest.mark.unit


@pytest.fixture
def tokens(tmp_path: Path) -> TokenService:
    settings = Settings(jwt_private_key_path=str(tmp_path / "key.pem"))
    return TokenService(settings, SigningKey.load_or_create(settings.jwt_private_key_path))


def test_role_matrix_is_monotonic() -> None:
    assert PERMISSIONS[Role.PLATFORM_ADMIN] == frozenset(Permission)
    assert PERMISSIONS[Role.OBSERVER] <= PERMISSIONS[Role.ANALYST] <= PERMISSIONS[Role.TENANT_ADMIN]
    assert Permission.REGISTRY_WRITE in PERMISSIONS[Role.DEVELOPER]
    assert Permission.REGISTRY_WRITE not in PERMISSIONS[Role.ANALYST]
    assert Permission.ADMIN_TENANTS not in PERMISSIONS[Role.TENANT_ADMIN]
    assert permissions_for("nobody") == frozenset()
    assert "| `registry:write` |" in matrix_markdown()


async def test_issued_token_verifies_with_spec_claims(tokens: TokenService) -> None:
    token, ttl = tokens.issue(
        user_id="usr_1", email="a@b.c", tenant_id="demo", role="developer", plan="pro", limits=None
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"sub", "email", "tenant_id", "role", "permissions", "plan_limits"} <= claims.keys()
    assert claims["plan_limits"]["max_tokens_per_month"] == 2000000
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    principal = await tokens.verify(token)
    assert (principal.subject, principal.tenant_id, principal.role) == ("usr_1", "demo", "developer")
    assert "registry:write" in principal.permissions and ttl == 3600


async def test_tampered_foreign_and_expired_tokens_are_rejected(tokens: TokenService, tmp_path: Path) -> None:
    token, _ = tokens.issue(
        user_id="u", email="a@b.c", tenant_id="demo", role="observer", plan="free", limits=None
    )
    head, body, sig = token.split(".")
    forged_body = jwt.utils.base64url_encode(
        b'{"sub":"u","tenant_id":"demo","role":"platform_admin"}'
    ).decode()
    with pytest.raises(InvalidToken):
        await tokens.verify(f"{head}.{forged_body}.{sig}")
    other = SigningKey.load_or_create(str(tmp_path / "other.pem"))
    foreign = jwt.encode(
        {"sub": "u", "tenant_id": "demo", "role": "platform_admin", "exp": time.time() + 60},
        other.private_key,
        algorithm="ES256",
        headers={"kid": other.kid},
    )
    with pytest.raises(InvalidToken):
        await tokens.verify(foreign)
    expired = jwt.encode(
        {
            "sub": "u",
            "tenant_id": "demo",
            "role": "observer",
            "iss": "ailab-gateway",
            "aud": "ailab",
            "exp": int(time.time()) - 10,
        },
        tokens._key.private_key,
        algorithm="ES256",
        headers={"kid": tokens._key.kid},
    )
    with pytest.raises(InvalidToken):
        await tokens.verify(expired)
    with pytest.raises(InvalidToken):
        await tokens.verify("not-a-jwt")


def test_signing_key_persists(tmp_path: Path) -> None:
    path = str(tmp_path / "k.pem")
    first = SigningKey.load_or_create(path)
    assert SigningKey.load_or_create(path).kid == first.kid
    assert (tmp_path / "k.pem").stat().st_mode & 0o077 == 0
    jwk = first.jwk()
    assert jwk["kty"] == "EC" and jwk["alg"] == "ES256" and "d" not in jwk


def test_api_keys() -> None:
    key_id, secret, prefix = new_api_key()
    assert api_key_id(secret) == key_id
    assert secret.startswith(prefix) and len(secret) > 50
    assert hash_api_key(secret) != secret and len(hash_api_key(secret)) == 64
    assert api_key_id("Bearer-something") is None and api_key_id("ailab_k_") is None


def test_sliding_window_limiter() -> None:
    limiter = SlidingWindowLimiter(3, 60)
    assert [limiter.hit("k", now=t) for t in (0, 1, 2)] == [None, None, None]
    wait = limiter.hit("k", now=3)
    assert wait is not None and 56 < wait <= 57
    assert limiter.hit("other", now=3) is None
    assert limiter.hit("k", now=61) is None  # the first attempt left the window


def test_production_refuses_development_secrets(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(environment="production", internal_token="x" * 32, platform_admin_password="p" * 20)
    with pytest.raises(ValidationError):
        Settings(environment="staging", demo_admin_password="d" * 20, platform_admin_password="p" * 20)
    ok = Settings(
        environment="production",
        internal_token="x" * 32,
        platform_admin_password="p" * 20,
        demo_admin_password="d" * 20,
    )
    assert ok.environment == "production"


def test_readme_shows_the_enforced_permission_matrix() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[4] / "README.md").read_text()
    assert matrix_markdown() in readme
