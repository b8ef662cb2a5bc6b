"""The internal caller dependency: the gateway's service credential is required, and the principal and
tenant it forwards reach the request's context (what log lines carry)."""

from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from ailab_runtime.context import tenant_id_var, user_id_var
from ailab_runtime.errors import install_error_handlers
from ailab_runtime.internal import INTERNAL_TOKEN_HEADER, PRINCIPAL_HEADER, Caller

pytestmark = pytest.mark.unit


def app() -> FastAPI:
    app = FastAPI()
    app.state.settings = SimpleNamespace(internal_token="s3cret")
    install_error_handlers(app)

    @app.get("/v1/tenants/{tenant_id}/whoami")
    async def whoami(tenant_id: str, caller: Caller) -> dict[str, str | None]:
        return {
            "principal": caller.principal_id,
            "user_var": user_id_var.get(),
            "tenant_var": tenant_id_var.get(),
        }

    return app


async def test_the_forwarded_principal_and_tenant_reach_the_request_context() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://t") as client:
        ok = await client.get(
            "/v1/tenants/acme/whoami", headers={INTERNAL_TOKEN_HEADER: "s3cret", PRINCIPAL_HEADER: "usr_1"}
        )
        refused = await client.get("/v1/tenants/acme/whoami", headers={INTERNAL_TOKEN_HEADER: "wrong"})
    assert ok.status_code == 200
    assert ok.json() == {"principal": "usr_1", "user_var": "usr_1", "tenant_var": "acme"}
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
