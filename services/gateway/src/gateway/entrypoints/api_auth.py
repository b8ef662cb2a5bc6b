"""Sign-in, invites and the issuer's public keys."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ailab_runtime.errors import ApiError, ErrorResponse

from ..application.rate_limit import SlidingWindowLimiter
from .deps import CurrentPrincipal, Tenancy, Tokens
from .schemas import AcceptInvite, TokenRequest, TokenResponse

router = APIRouter(tags=["auth"])


def _limited(request: Request, key: str) -> None:
    limiter: SlidingWindowLimiter = (
        request.app.state.ip_limiter if key.startswith("ip:") else request.app.state.login_limiter
    )
    wait = limiter.hit(key)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            "too many sign-in attempts; wait and retry",
            {"retry_after_s": round(wait, 1)},
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )


@router.post(
    "/v1/auth/token",
    response_model=TokenResponse,
    summary="Sign in with email and password",
    responses={401: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
)
async def issue_token(body: TokenRequest, request: Request, tenancy: Tenancy) -> TokenResponse:
    ip = request.client.host if request.client else "unknown"
    _limited(request, f"email:{body.email}")
    _limited(request, f"ip:{ip}")
    token, ttl = await tenancy.sign_in(body.email, body.password)
    return TokenResponse(access_token=token, expires_in=ttl)


@router.post(
    "/v1/auth/invites/accept",
    response_model=TokenResponse,
    summary="Accept an invite: set a password and get a token",
    responses={400: {"model": ErrorResponse}},
)
async def accept_invite(body: AcceptInvite, request: Request, tenancy: Tenancy) -> TokenResponse:
    _limited(request, f"ip:{request.client.host if request.client else 'unknown'}")
    user = await tenancy.accept_invite(body.token, body.password)
    token, ttl = await tenancy.sign_in(user["email"], body.password)
    return TokenResponse(access_token=token, expires_in=ttl)


@router.get("/.well-known/jwks.json", summary="Public keys of the built-in token issuer")
async def jwks(tokens: Tokens) -> dict[str, object]:
    return tokens.jwks()


@router.get("/v1/auth/me", summary="Who the bearer token says you are")
async def me(principal: CurrentPrincipal) -> dict[str, object]:
    return {
        "sub": principal.subject,
        "tenant_id": principal.tenant_id,
        "role": principal.role,
        "email": principal.email,
        "permissions": sorted(principal.permissions),
        "via": principal.via,
    }
