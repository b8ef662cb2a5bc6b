"""Small clients for e2e tests: an authenticated gateway client and tenant setup."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx


def llm_flow(llm: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """The smallest agent flow that makes a run call a provider: input `in` → llm node `draft` (its
    config `llm`) → output `out` (its config `output`). e2e tests differ only in those two configs."""
    return {
        "nodes": [
            {"id": "in", "type": "input", "config": {}},
            {"id": "draft", "type": "llm", "config": llm},
            {"id": "out", "type": "output", "config": output},
        ],
        "edges": [{"source": "in", "target": "draft"}, {"source": "draft", "target": "out"}],
    }


FLOW = llm_flow({"model": "local-echo", "prompt": "Answer: {{input}}"}, output={})


def client(base_url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=30.0)


def sign_in(base_url: str, email: str, password: str) -> str:
    reply = httpx.post(f"{base_url}/v1/auth/token", json={"email": email, "password": password}, timeout=30)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def new_tenant_with_admin(base_url: str, admin: httpx.Client, plan: str = "pro") -> tuple[str, str, str]:
    """Platform admin creates a tenant and its first tenant admin; returns (tenant_id, email, token)."""
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    reply = admin.post(
        "/v1/admin/tenants", json={"tenant_id": tenant_id, "name": f"Tenant {tenant_id}", "plan": plan}
    )
    assert reply.status_code == 201, reply.text
    email = f"owner-{tenant_id}@acme.example"
    invite = admin.post(
        f"/v1/tenants/{tenant_id}/users/invite", json={"email": email, "role": "tenant_admin"}
    )
    assert invite.status_code == 201, invite.text
    accepted = httpx.post(
        f"{base_url}/v1/auth/invites/accept",
        json={"token": invite.json()["invite_token"], "password": "owner-password-123"},
    )
    assert accepted.status_code == 200, accepted.text
    return tenant_id, email, str(accepted.json()["access_token"])


def invite_and_join(base_url: str, inviter: httpx.Client, tenant_id: str, role: str) -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@acme.example"
    invite = inviter.post(f"/v1/tenants/{tenant_id}/users/invite", json={"email": email, "role": role})
    assert invite.status_code == 201, invite.text
    accepted = httpx.post(
        f"{base_url}/v1/auth/invites/accept",
        json={"token": invite.json()["invite_token"], "password": f"{role}-password-123"},
    )
    assert accepted.status_code == 200, accepted.text
    return str(accepted.json()["access_token"])


def eventually(
    check: Callable[[], Any],
    timeout_s: float = 30.0,
    interval_s: float = 0.2,
    describe: Callable[[], Any] | None = None,
) -> Any:
    """Poll `check` until it returns a truthy value (bounded); returns that value. On timeout the
    error shows `describe()` (what the check saw last) when given."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    seen = describe() if describe else last
    raise AssertionError(f"condition not met within {timeout_s}s (last: {seen!r})")


def all_items(http: httpx.Client, path: str, page_size: int = 50) -> list[dict[str, Any]]:
    """Every item of a cursor-paginated list route, following `next_cursor` to the last page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = http.get(path, params={"limit": page_size, "cursor": cursor}).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def finished_experiment(
    http: httpx.Client, tenant_id: str, experiment_id: str, timeout_s: float
) -> dict[str, Any]:
    """The experiment's status once its run is over (`completed` or `failed`), waiting up to `timeout_s`:
    examples are executed and scored asynchronously by the run-executor."""
    path = f"/v1/tenants/{tenant_id}/experiments/{experiment_id}/status"
    status: dict[str, Any] = eventually(
        lambda: (s := http.get(path).json())["status"] in ("completed", "failed") and s, timeout_s=timeout_s
    )
    return status
