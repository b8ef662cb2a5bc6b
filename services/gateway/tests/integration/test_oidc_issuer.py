"""Tokens of an external OIDC issuer (e.g. Cognito, Keycloak) are verified against its JWKS, served
here by a real local HTTP server, and mapped to tenant and role claims."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.adapters.signing_keys import SigningKey
from gateway.application.tokens import InvalidToken, TokenService
from gateway.config import Settings

pytestmark = pytest.mark.integration

ISSUER = "https://idp.example/realms/acme"


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "idp-key-1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(jwks if self.path == "/jwks.json" else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json", key
    server.shutdown()


def idp_token(key: rsa.RSAPrivateKey, **claims: object) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": "ailab-api",
        "sub": "ext-user-1",
        "iat": now,
        "exp": now + 300,
        "custom:tenant_id": "acme",
        "custom:role": "analyst",
        "email": "ext@acme.example",
        **claims,
    }
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "idp-key-1"})


@pytest.fixture
def tokens(idp: tuple[str, rsa.RSAPrivateKey], tmp_path: Path) -> TokenService:
    settings = Settings(
        jwt_private_key_path=str(tmp_path / "k.pem"),
        oidc_jwks_url=idp[0],
        oidc_issuer=ISSUER,
        oidc_audience="ailab-api",
    )
    return TokenService(settings, SigningKey.load_or_create(settings.jwt_private_key_path))


async def test_oidc_token_maps_custom_claims(
    tokens: TokenService, idp: tuple[str, rsa.RSAPrivateKey]
) -> None:
    principal = await tokens.verify(idp_token(idp[1]))
    assert (principal.subject, principal.tenant_id, principal.role, principal.via) == (
        "ext-user-1",
        "acme",
        "analyst",
        "oidc",
    )
    assert "registry:read" in principal.permissions and "registry:write" not in principal.permissions


async def test_oidc_token_rejections(tokens: TokenService, idp: tuple[str, rsa.RSAPrivateKey]) -> None:
    key = idp[1]
    for bad in (
        idp_token(key, aud="someone-else"),
        idp_token(key, iss="https://evil.example"),
        idp_token(key, exp=int(time.time()) - 5),
        idp_token(key, **{"custom:role": "emperor"}),
    ):
        with pytest.raises(InvalidToken):
            await tokens.verify(bad)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken):
        await tokens.verify(idp_token(other))  # right kid, wrong key
