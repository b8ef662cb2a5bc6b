"""Kill agent-registry (its outbox relay and projector with it) with SIGKILL in the middle of a
stream of writes, restart it, and find every event delivered and every projection applied once."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from scripts.system import restart_service, stop_service
from tests.e2e.conftest import System
from tests.e2e.helpers import all_items, client, eventually, new_tenant_with_admin
from tests.support.kafka import read_topic

pytestmark = pytest.mark.e2e


def test_sigkill_registry_mid_stream(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="enterprise")
    owner = client(system.url, owner_token)
    created: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def create(i: int) -> None:
        try:
            reply = owner.post(f"/v1/tenants/{tenant_id}/projects", json={"name": f"p{i}"})
        except httpx.HTTPError:
            return
        if reply.status_code == 201:
            with lock:
                created.append(reply.json()["id"])
                if len(created) == 25 and not killed.is_set():
                    killed.set()
                    stop_service(system.running, "agent-registry", sig=signal.SIGKILL)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(create, range(80)))
    assert killed.is_set()
    lost = 80 - len(created)
    assert lost > 0, "requests failed while the registry was down"

    restart_service(system.running, "agent-registry")
    for i in range(10):
        reply = owner.post(f"/v1/tenants/{tenant_id}/projects", json={"name": f"after{i}"})
        assert reply.status_code == 201, reply.text
        created.append(reply.json()["id"])

    def listed() -> list[str]:
        """The registry's read model. A commit written just before the SIGKILL but not yet projected
        appears here once the restarted projector's catch-up reaches it, so this is re-read."""
        return [p["id"] for p in all_items(owner, f"/v1/tenants/{tenant_id}/projects")]

    def delivered() -> set[str]:
        records = asyncio.run(
            read_topic(
                system.infra.kafka_bootstrap_servers,
                system.topic("ailab.registry.events"),
                until=1,
                timeout_s=30,
            )
        )
        events = [json.loads(r.value or b"") for r in records if r.key == tenant_id.encode()]
        return {e["payload"]["project_id"] for e in events if e["event_type"] == "registry.ProjectCreated"}

    state: dict[str, object] = {}

    def converged() -> bool:
        in_view, on_topic = listed(), delivered()
        state.update(
            duplicates_in_view=len(in_view) - len(set(in_view)),
            acknowledged_not_in_view=sorted(set(created) - set(in_view)),
            in_view_not_delivered=sorted(set(in_view) - on_topic),
            delivered_not_in_view=sorted(on_topic - set(in_view)),
        )
        return not any(state.values())

    eventually(converged, timeout_s=60, describe=lambda: state)
    final = listed()
    # The gateway's consumer-side ledger counts each project exactly once despite redelivery.
    eventually(
        lambda: owner.get(f"/v1/tenants/{tenant_id}").json()["current_usage"]["projects"] == len(final),
        timeout_s=60,
    )
