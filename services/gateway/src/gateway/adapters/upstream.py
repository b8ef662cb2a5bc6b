"""Pooled internal HTTP clients to the services behind the gateway."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from ailab_runtime.context import request_id_var
from ailab_runtime.errors import ApiError
from ailab_runtime.internal import INTERNAL_TOKEN_HEADER, PRINCIPAL_HEADER, ROLE_HEADER
from ailab_runtime.tracing import inject_http_headers

from ..application.tokens import Principal

FORWARDED_REQUEST_HEADERS = (
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "accept",
    "stripe-signature",  # billing verifies Stripe's webhook signature itself
)
FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "etag",
    "location",
    "retry-after",
    "content-disposition",
    "idempotent-replayed",
)


class Upstream:
    """One service behind the gateway; calls carry the internal credential, caller, request id and trace."""

    def __init__(self, name: str, base_url: str, internal_token: str, timeout_s: float) -> None:
        self.name = name
        self._token = internal_token
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    def headers(self, principal: Principal | None, incoming: dict[str, str] | None = None) -> dict[str, str]:
        headers = {k: v for k, v in (incoming or {}).items() if k.lower() in FORWARDED_REQUEST_HEADERS}
        headers[INTERNAL_TOKEN_HEADER] = self._token
        headers["X-Request-ID"] = request_id_var.get() or ""
        if principal is not None:
            headers[PRINCIPAL_HEADER] = principal.subject
            headers[ROLE_HEADER] = principal.role
        return inject_http_headers(headers)

    async def forward(self, request: Request, principal: Principal | None) -> Response:
        """Stream `request` to this service and its answer back to the caller (`principal` None: an
        unauthenticated caller such as Stripe's webhooks, which the service authenticates itself)."""
        has_body = request.method in ("POST", "PUT", "PATCH")
        outgoing = self.client.build_request(
            request.method,
            request.url.path,
            params=list(request.query_params.multi_items()),
            content=request.stream() if has_body else None,
            headers=self.headers(principal, dict(request.headers)),
        )
        reply = await self._send(outgoing, stream=True)
        headers = {k: v for k, v in reply.headers.items() if k.lower() in FORWARDED_RESPONSE_HEADERS}
        return StreamingResponse(
            reply.aiter_raw(),
            status_code=reply.status_code,
            headers=headers,
            background=BackgroundTask(reply.aclose),
        )

    async def call(
        self, method: str, path: str, principal: Principal | None, json: Any = None
    ) -> httpx.Response:
        """One whole request to this service on the gateway's own behalf (not a forwarded one)."""
        return await self._send(
            self.client.build_request(method, path, json=json, headers=self.headers(principal))
        )

    async def _send(self, outgoing: httpx.Request, stream: bool = False) -> httpx.Response:
        """Send; a service that does not answer becomes 504 / 503 in the shared error shape."""
        try:
            return await self.client.send(outgoing, stream=stream)
        except httpx.TimeoutException as exc:
            raise ApiError(504, "upstream_timeout", f"{self.name} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise ApiError(
                503, "upstream_unavailable", f"{self.name} is not reachable", headers={"Retry-After": "1"}
            ) from exc

    async def ready(self) -> bool:
        try:
            return (await self.client.get("/readyz", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        await self.client.aclose()
