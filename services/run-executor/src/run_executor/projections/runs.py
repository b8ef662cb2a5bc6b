"""`runs` view: one document per run, the fold of its stream (`domain.model.evolve_run`), guarded by
`_version`: an event at or below the stored version is skipped (re-applying is a no-op), and a write
replaces the document only if it is still at the version read. The projector applies one stream at
a time, so there is a single writer per document."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_contracts.events.runs import (
    RunCancelled,
    RunDeleted,
    RunFailed,
    RunQueued,
    RunStarted,
    RunSucceeded,
    RunTimedOut,
    run_stream,
)
from ailab_runtime.mongo_server import delete_matching

from ..adapters.mongo_runs import RUNS, run_from_doc, run_to_doc
from ..domain.model import evolve_run

log = logging.getLogger(__name__)

RUN_EVENTS = (RunQueued, RunStarted, RunSucceeded, RunFailed, RunCancelled, RunTimedOut, RunDeleted)
_MAX_ATTEMPTS = 20


class RunsProjection:
    name = RUNS

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[RUNS]

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if not isinstance(event, RUN_EVENTS):
            return
        if envelope.stream_id != run_stream(envelope.tenant_id, event.run_id):
            log.error(
                "run event outside its run stream; ignored",
                extra={"fields": {"stream_id": envelope.stream_id}},
            )
            return
        for _ in range(_MAX_ATTEMPTS):
            doc = await self._col.find_one({"_id": event.run_id})
            if doc is not None:
                if doc["tenant_id"] != envelope.tenant_id:
                    log.error(
                        "run event of another tenant; ignored", extra={"fields": {"run_id": event.run_id}}
                    )
                    return
                if doc["_version"] >= envelope.stream_version:
                    return
            state = run_from_doc(doc) if doc is not None else None
            new_state = evolve_run(state, envelope.tenant_id, envelope.stream_version, event)
            if new_state is None:
                return
            new_doc = run_to_doc(new_state)
            if doc is None:
                try:
                    await self._col.insert_one(new_doc)
                    return
                except DuplicateKeyError:
                    continue
            result = await self._col.replace_one({"_id": event.run_id, "_version": doc["_version"]}, new_doc)
            if result.matched_count:
                return
        raise RuntimeError(f"{RUNS}: could not apply {envelope.event_type} to {event.run_id}")

    async def reset(self) -> None:
        await delete_matching(self._col, {})
