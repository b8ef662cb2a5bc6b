"""Whole-system fixtures: all seven services as real processes on real Kafka and MongoDB, isolated
from any other run by their own ports, database names and topic prefix."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts.system import SERVICES, RunningSystem, start_all, stop_all
from tests.support.infra import Infra

# The run-executor's fake provider servers (real HTTP speaking each provider's wire format).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "run-executor" / "tests"))
from fakes import provider_openai  # noqa: E402
from fakes.provider_http import FakeServer  # noqa: E402

_TOKENS: dict[tuple[str, str, str], str] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class System:
    running: RunningSystem
    infra: Infra
    topic_prefix: str
    database_prefix: str
    admin_email: str
    admin_password: str
    demo_email: str
    demo_password: str
    openai: FakeServer

    @property
    def url(self) -> str:
        return self.running.gateway_url

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def database(self, service: str) -> str:
        return f"{self.database_prefix}{service.replace('-', '_')}"

    def token(self, email: str, password: str) -> str:
        """A token for the user, reused within the session (sign-in is rate limited per email)."""
        cached = _TOKENS.get((self.url, email, password))
        if cached:
            return cached
        reply = httpx.post(f"{self.url}/v1/auth/token", json={"email": email, "password": password})
        assert reply.status_code == 200, reply.text
        token = str(reply.json()["access_token"])
        _TOKENS[(self.url, email, password)] = token
        return token


E2E_WEBHOOK_SECRET = "whsec_e2e_signing_secret"


@pytest.fixture(scope="session")
def system(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    run_id = infra.unique("")  # carries the session's token: its topics are deleted afterwards
    topic_prefix = f"e2e{run_id}."
    database_prefix = f"e2e{run_id}_"
    tmp: Path = tmp_path_factory.mktemp("system")
    admin_password, demo_password = f"admin-{run_id}-pw", f"demo-{run_id}-pw"
    base = {
        "ENVIRONMENT": "test",
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
        "MONGODB_URI": infra.mongodb_uri,
        "TOPIC_PREFIX": topic_prefix,
        "INTERNAL_TOKEN": f"internal-{run_id}",
        "JWT_PRIVATE_KEY_PATH": str(tmp / "jwt.pem"),
        "PLATFORM_ADMIN_EMAIL": f"admin-{run_id}@ailab.local",
        "PLATFORM_ADMIN_PASSWORD": admin_password,
        "DEMO_ADMIN_EMAIL": f"demo-{run_id}@ailab.local",
        "DEMO_ADMIN_PASSWORD": demo_password,
        "LOGIN_MAX_ATTEMPTS_PER_IP": "100000",
        # billing: stripe-mock from `make infra-up`, a known webhook secret, no grace period
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111"),
        "STRIPE_WEBHOOK_SECRET": E2E_WEBHOOK_SECRET,
        "BILLING_GRACE_PERIOD_S": "0",
        "BILLING_LOOP_INTERVAL_S": "0.5",
        "LOG_LEVEL": "INFO",
    }
    ports = {name: free_port() for name in SERVICES}
    fake_openai = FakeServer(provider_openai.echo).start()
    base["OPENAI_BASE_URL"] = fake_openai.base_url
    base["AILAB_SECRET_OPENAI"] = f"sk-e2e-{run_id}"
    running = start_all(ports, base, tmp / "logs", database_prefix=database_prefix)
    try:
        yield System(
            running,
            infra,
            topic_prefix,
            database_prefix,
            base["PLATFORM_ADMIN_EMAIL"],
            admin_password,
            base["DEMO_ADMIN_EMAIL"],
            demo_password,
            fake_openai,
        )
    finally:
        stop_all(running)
        fake_openai.stop()
        for name in SERVICES:
            log = tmp / "logs" / f"{name}.log"
            if log.exists() and b"Traceback" in log.read_bytes():
                print(f"--- {name}.log has tracebacks: {log}")
