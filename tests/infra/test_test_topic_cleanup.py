"""A test session deletes the Kafka topics it made when it ends (tests/support/infra.py): those
named with its token, and nothing else on the broker (a running system's, a bench's, another
session's)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable

import pytest

from tests.support.infra import (
    SESSION_TOKEN,
    Infra,
    _delete_topics,
    _in_own_thread,
    _topic_names,
    topics_deleted_afterwards,
)

pytestmark = pytest.mark.integration


def _create(bootstrap: str, *names: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
        finally:
            await admin.close()

    _in_own_thread(create)
    # The broker's metadata catches up with a creation shortly after it is acknowledged.
    assert _eventually(lambda: set(names) <= _topic_names(bootstrap)), f"{names} never listed"


def _eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_the_sessions_topics_go_and_everything_else_stays(infra: Infra) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    made = infra.unique("cleanup-probe-")
    made_too = f"ailab.{infra.unique('cleanup-probe-')}"  # any name with the token, even a system-like one
    others = f"cleanup-other-{uuid.uuid4().hex[:10]}"  # a bench's or another session's: no token
    assert SESSION_TOKEN in made and SESSION_TOKEN not in others
    try:
        with topics_deleted_afterwards(bootstrap):
            _create(bootstrap, made, made_too, others)
        assert _eventually(lambda: not {made, made_too} & _topic_names(bootstrap))
        assert others in _topic_names(bootstrap)
    finally:
        with contextlib.suppress(Exception):
            _delete_topics(bootstrap, [others])


def test_a_broker_gone_at_the_end_is_a_warning_not_a_failure() -> None:
    with pytest.warns(UserWarning, match="could not delete this session's test topics"):
        with topics_deleted_afterwards("127.0.0.1:1"):  # nothing listens there
            pass
