"""Audit records derive action, resource and result from the matched route."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from gateway.application.tokens import Principal
from gateway.entrypoints.audit import audit_record

pytestmark = pytest.mark.unit


def test_audit_record_from_route() -> None:
    app = FastAPI()
    captured: list[dict[str, object]] = []

    @app.middleware("http")
    async def capture(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        captured.append(audit_record(request, response))
        return response

    @app.put("/v1/tenants/{tenant_id}/agents/{agent_id}")
    async def put(tenant_id: str, agent_id: str, request: Request) -> Response:
        request.state.principal = Principal(subject="usr_1", tenant_id=tenant_id, role="developer")
        return Response(status_code=409)

    client = TestClient(app)
    client.put(
        "/v1/tenants/acme/agents/agt_9", headers={"user-agent": "pytest-ua", "x-forwarded-for": "10.1.2.3"}
    )
    rec = captured[0]
    assert rec["action"] == "PUT /v1/tenants/{tenant_id}/agents/{agent_id}"
    assert (rec["tenant_id"], rec["resource_type"], rec["resource_id"]) == ("acme", "agents", "agt_9")
    assert (rec["user_id"], rec["result"], rec["status_code"]) == ("usr_1", "failure", 409)
    assert (rec["source_ip"], rec["user_agent"]) == ("10.1.2.3", "pytest-ua")
