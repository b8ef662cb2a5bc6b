"""The EventRecorder port on the runtime's event store (outbox + inline projections)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from ailab_runtime.errors import ApiError
from ailab_runtime.service import Runtime

from ..application.ports import StreamConflict


class RuntimeEventRecorder:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def record(
        self, stream_id: str, expected_version: int, tenant_id: str, events: Sequence[BaseModel]
    ) -> int:
        try:
            commit = await self._runtime.record(
                stream_id=stream_id, expected_version=expected_version, tenant_id=tenant_id, events=events
            )
        except ApiError as exc:
            if exc.status == 409:
                raise StreamConflict(stream_id) from exc
            raise
        return commit.last_version
