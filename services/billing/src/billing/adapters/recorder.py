"""Appends billing events through the runtime (event store = outbox, projected inline)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_runtime.errors import ApiError
from ailab_runtime.service import Runtime


class StreamConflict(Exception):
    """Another writer appended to the stream first."""


class RuntimeRecorder:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def version(self, stream_id: str) -> int:
        return await self._runtime.store.stream_version(stream_id)

    async def read(self, stream_id: str) -> list[EventEnvelope]:
        return await self._runtime.store.read_stream(stream_id)

    async def record(
        self, stream_id: str, expected_version: int, tenant_id: str, events: Sequence[BaseModel]
    ) -> None:
        try:
            await self._runtime.record(
                stream_id=stream_id, expected_version=expected_version, tenant_id=tenant_id, events=events
            )
        except ApiError as exc:
            if exc.status == 409:
                raise StreamConflict(stream_id) from exc
            raise
