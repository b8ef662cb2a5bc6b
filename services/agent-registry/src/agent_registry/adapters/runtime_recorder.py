"""`EventRecorder` over the shared runtime: one commit in the event store, projections inline."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_runtime.service import Runtime


class RuntimeEventRecorder:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def record(
        self, *, stream_id: str, expected_version: int, tenant_id: str, events: Sequence[BaseModel]
    ) -> Sequence[EventEnvelope]:
        commit = await self._runtime.record(
            stream_id=stream_id, expected_version=expected_version, tenant_id=tenant_id, events=events
        )
        return commit.events
