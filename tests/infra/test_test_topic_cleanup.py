"""A test session deletes the Kafka topics it created when it ends (tests/support/infra.py), and
leaves those of a system running on the same broker."""

from __future__ import annotations

import time

from tests.support.infra import Infra, _delete_topics, _in_own_thread, _topic_names, topics_deleted_afterwards


def _create(bootstrap: str, *names: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
        finally:
            await admin.close()

    _in_own_thread(create)


def _eventually_absent(bootstrap: str, name: str) -> bool:
    deadline = time.monotonic() + 15
    while name in _topic_names(bootstrap):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_topics_made_during_a_session_go_and_a_running_systems_stay(infra: Infra) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    made = infra.unique("cleanup-probe-")
    systems = f"ailab.{infra.unique('cleanup-probe-')}"
    existing = infra.unique("cleanup-existing-")
    _create(bootstrap, existing)
    try:
        with topics_deleted_afterwards(bootstrap):
            _create(bootstrap, made, systems)
        assert _eventually_absent(bootstrap, made)
        assert systems in _topic_names(bootstrap)
        assert existing in _topic_names(bootstrap)  # there before the session began
    finally:
        _delete_topics(bootstrap, [n for n in (existing, systems) if n in _topic_names(bootstrap)])
