"""A view document per aggregate, holding the domain fold of its stream and guarded by `_version`.

Applying an event reads the document, folds the event in with the domain's `evolve` function and
writes it back only if the document is still at the version it read (insert for a new document,
compare-and-replace otherwise). A document already at or past the event's stream version is left
alone, so re-applying (catch-up after a crash, inline and catch-up racing, a rebuild) is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_runtime.mongo_server import delete_matching

from ..domain.model import EventMeta

log = logging.getLogger(__name__)

_MAX_ATTEMPTS = 20


class GuardedStateView:
    name: str

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        collection: str,
        key_of: Callable[[BaseModel], str | None],
        evolve: Callable[[Any, str, BaseModel, EventMeta], Any],
        to_doc: Callable[[Any], dict[str, Any]],
        from_doc: Callable[[dict[str, Any]], Any],
    ) -> None:
        self.name = collection
        self._col = db[collection]
        self._key_of = key_of
        self._evolve = evolve
        self._to_doc = to_doc
        self._from_doc = from_doc

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        key = self._key_of(event)
        if key is None:
            return
        meta = EventMeta.of(envelope)
        for _ in range(_MAX_ATTEMPTS):
            doc = await self._col.find_one({"_id": key})
            if doc is not None:
                if doc["tenant_id"] != envelope.tenant_id:
                    log.error(
                        "event of another tenant for an existing view document; ignored",
                        extra={"fields": {"view": self.name, "stream_id": envelope.stream_id}},
                    )
                    return
                if doc["_version"] >= meta.stream_version:
                    return
            state = self._from_doc(doc) if doc is not None else None
            new_state = self._evolve(state, envelope.tenant_id, event, meta)
            if new_state is None:
                return
            new_doc = self._to_doc(new_state)
            if doc is None:
                try:
                    await self._col.insert_one(new_doc)
                    return
                except DuplicateKeyError:
                    continue  # another projector created it first: re-read and re-check
            result = await self._col.replace_one({"_id": key, "_version": doc["_version"]}, new_doc)
            if result.matched_count:
                return
        raise RuntimeError(f"{self.name}: could not apply {envelope.event_type} to {key} (too many races)")

    async def reset(self) -> None:
        # delete, not drop: a drop would also remove the indexes created at start-up
        await delete_matching(self._col, {})
