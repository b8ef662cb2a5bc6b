"""The write path every feature area's command handlers share: append the decided events to the
entity's stream at the version its state was read at, then fold them onto that state.

The stream's optimistic concurrency guards every write: state read from a view that lags the
stream yields a stale expected version and the append fails with 409, never a lost update.
Folding the recorded events in memory gives read-your-writes even if the inline projection failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from ailab_contracts import EventEnvelope

from ..domain.lifecycle import fold
from .ports import EventRecorder

S = TypeVar("S")
Recorded = list[tuple[EventEnvelope, BaseModel]]


async def record(
    recorder: EventRecorder,
    *,
    tenant_id: str,
    stream_id: str,
    expected_version: int,
    events: Sequence[BaseModel],
) -> Recorded:
    """Append `events` as one commit; each envelope paired with its event, ready to fold."""
    envelopes = await recorder.record(
        stream_id=stream_id, expected_version=expected_version, tenant_id=tenant_id, events=events
    )
    return list(zip(envelopes, events, strict=True))


async def record_and_fold(
    recorder: EventRecorder,
    evolve: Callable[..., Any],
    state: S | None,
    *,
    tenant_id: str,
    stream_id: str,
    expected_version: int,
    events: Sequence[BaseModel],
) -> S:
    """Record `events` and return `state` after them (`evolve` is the entity's `evolve_*`)."""
    recorded = await record(
        recorder, tenant_id=tenant_id, stream_id=stream_id, expected_version=expected_version, events=events
    )
    new_state: S | None = fold(evolve, state, tenant_id, recorded)
    assert new_state is not None  # the recorded events are this entity's
    return new_state
