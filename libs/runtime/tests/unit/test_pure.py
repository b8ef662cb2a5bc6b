"""Pure helpers: cursors, ids, log redaction, topics."""

import pytest

from ailab_runtime import topics_for_prefix
from ailab_runtime.errors import ApiError
from ailab_runtime.ids import new_id
from ailab_runtime.logging import redact
from ailab_runtime.pagination import decode_cursor, encode_cursor
from ailab_runtime.relay import topic_by_context

pytestmark = pytest.mark.unit


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor("prj_123")) == "prj_123"
    assert decode_cursor(None) is None
    with pytest.raises(ApiError) as err:
        decode_cursor("!!not-a-cursor")
    assert err.value.status == 400 and err.value.code == "invalid_cursor"


def test_ids_sort_by_creation() -> None:
    ids = [new_id("prj") for _ in range(50)]
    stamps = [i.split("_")[1][:12] for i in ids]  # millisecond timestamp part
    assert stamps == sorted(stamps)
    assert len(set(ids)) == 50
    assert all(i.startswith("prj_") for i in ids)


def test_secrets_are_redacted() -> None:
    out = redact({"password": "x", "Authorization": "Bearer y", "api_key": "z", "name": "ok"})
    assert out == {
        "password": "[redacted]",
        "Authorization": "[redacted]",
        "api_key": "[redacted]",
        "name": "ok",
    }


def test_topics() -> None:
    assert topic_by_context("t1.")("registry.AgentCreated") == "t1.ailab.registry.events"
    topics = topics_for_prefix("x.")
    assert "x.ailab.usage.events" in topics and "x.ailab.usage.events.dlq" in topics
