"""The one fixture module for real infrastructure in tests.

Order of preference:
1. `KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URI` set (by `make test`, CI, or you): use them.
2. A Docker engine answers a ping: start Kafka and MongoDB containers with testcontainers.
3. Otherwise: the defaults of `make infra-up` (127.0.0.1:9092, mongodb://127.0.0.1:27017/), which
   must answer, or the session fails with a message saying how to start them.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap_servers: str
    mongodb_uri: str
    source: str  # env | testcontainers | local

    def unique(self, prefix: str) -> str:
        """A name no other test uses (databases, topic prefixes, consumer groups)."""
        return f"{prefix}{uuid.uuid4().hex[:10]}"


def docker_engine_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "not available"
        return False


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port or default_port)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Infra(kafka, mongo, "env")
        return
    if docker_engine_available():
        from testcontainers.community.mongodb import MongoDbContainer
        from testcontainers.kafka import KafkaContainer  # not deprecated (unlike testcontainers.mongodb)

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as k, MongoDbContainer("mongo:7") as m:
            yield Infra(k.get_bootstrap_server(), m.get_connection_url(), "testcontainers")
        return
    kafka, mongo = "127.0.0.1:9092", "mongodb://127.0.0.1:27017/"
    if not (_reachable(*_host_port(kafka, 9092)) and _reachable("127.0.0.1", 27017)):
        pytest.fail(
            "Kafka/MongoDB not reachable and no Docker engine: run `make infra-up` "
            "or set KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI",
            pytrace=False,
        )
    yield Infra(kafka, mongo, "local")


@pytest.fixture
async def mongo_db(infra: Infra) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of its own for one test, dropped afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    name = infra.unique("test_db_")
    yield client[name]
    await client.drop_database(name)
    await client.close()
