"""The one fixture module for real infrastructure in tests.

Order of preference:
1. `KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URI` set (by `make test`, CI, or you): use them.
2. A Docker engine answers a ping: start Kafka and MongoDB containers with testcontainers.
3. Otherwise: the defaults of `make infra-up` (127.0.0.1:9092, mongodb://127.0.0.1:27017/), which
   must answer, or the session fails with a message saying how to start them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

# This test session's mark, in every name `Infra.unique` gives: what the session made on a shared
# broker is found by it when the session ends (topics_deleted_afterwards), and nothing else is.
SESSION_TOKEN = f"s{uuid.uuid4().hex[:8]}s"


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap_servers: str
    mongodb_uri: str
    source: str  # env | testcontainers | local

    def unique(self, prefix: str) -> str:
        """A name no other test uses (databases, topic prefixes, consumer groups), carrying this
        session's SESSION_TOKEN."""
        return f"{prefix}{SESSION_TOKEN}{uuid.uuid4().hex[:6]}"


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


T = TypeVar("T")


def _in_own_thread(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs `work` to completion in a loop of its own, on a thread of its own: the session's event
    loop (pytest-asyncio's) is left alone, running or not."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work()).result()


def _topic_names(bootstrap: str) -> set[str]:
    async def names() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            return set(await admin.list_topics())
        finally:
            await admin.close()

    return _in_own_thread(names)


def _delete_topics(bootstrap: str, topics: list[str]) -> list[str]:
    """Deletes `topics`; returns those the broker refused (one already gone is not refused)."""

    async def delete() -> list[str]:
        refused = []
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            for start in range(0, len(topics), 100):
                response = await admin.delete_topics(topics[start : start + 100])
                # Per topic (name, error code): 0 deleted, 3 UNKNOWN_TOPIC_OR_PARTITION (gone already).
                refused += [str(error[0]) for error in response.topic_error_codes if error[1] not in (0, 3)]
        finally:
            await admin.close()
        return refused

    return _in_own_thread(delete)


@contextlib.contextmanager
def topics_deleted_afterwards(bootstrap: str) -> Iterator[None]:
    """Deletes, when the session ends, the topics it made: those whose name carries SESSION_TOKEN
    (every `Infra.unique` name does). Each test names its own, and a broker that outlives test runs,
    as `make up`'s does, kept every one: thousands of partitions, each with files open in the
    broker. Topics of anything else on the broker (a running system, a bench, another session) stay.
    A failure here is a warning: it must not fail a run whose tests passed."""
    try:
        yield
    finally:
        try:
            made = sorted(t for t in _topic_names(bootstrap) if SESSION_TOKEN in t)
            refused = _delete_topics(bootstrap, made) if made else []
            if refused:
                warnings.warn(f"the broker kept {len(refused)} test topics: {refused[:5]}", stacklevel=1)
        except Exception as exc:  # noqa: BLE001 - e.g. the broker is down: the run's outcome stands
            warnings.warn(f"could not delete this session's test topics: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    if kafka and mongo:
        with topics_deleted_afterwards(kafka):
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
    with topics_deleted_afterwards(kafka):
        yield Infra(kafka, mongo, "local")


@pytest.fixture
async def mongo_db(infra: Infra) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of its own for one test, dropped afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    name = infra.unique("test_db_")
    yield client[name]
    await client.drop_database(name)
    await client.close()
