"""Read models of prompts, rebuilt from the prompt streams.

- `prompts`: one document per prompt, the fold of its whole stream (`_version` guards it and is the
  expected version of the next write).
- `prompt_versions`: one document per version (`_id` `<prompt_id>:v<n>`), written once when the
  version is created; deleting the prompt marks its versions `deprecated` / `prompt_deleted`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_contracts.events.prompts import (
    PromptCreated,
    PromptDeleted,
    PromptLabelMoved,
    PromptLabelRemoved,
    PromptUpdated,
    PromptVersionCreated,
)
from ailab_runtime.mongo_server import delete_matching
from ailab_runtime.projections import Projection

from ..domain.model import EventMeta
from ..projections.guarded import GuardedStateView
from .domain import evolve_prompt, evolve_prompt_version
from .store import PROMPT_VERSIONS, PROMPTS, prompt_from_doc, prompt_to_doc, prompt_version_to_doc

_PROMPT_STREAM_EVENTS = (
    PromptCreated,
    PromptUpdated,
    PromptDeleted,
    PromptVersionCreated,
    PromptLabelMoved,
    PromptLabelRemoved,
)


def _prompt_key(event: BaseModel) -> str | None:
    return event.prompt_id if isinstance(event, _PROMPT_STREAM_EVENTS) else None


class PromptsProjection(GuardedStateView):
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        super().__init__(db, PROMPTS, _prompt_key, evolve_prompt, prompt_to_doc, prompt_from_doc)


class PromptVersionsProjection:
    name = PROMPT_VERSIONS

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[PROMPT_VERSIONS]

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        meta = EventMeta.of(envelope)
        if isinstance(event, PromptVersionCreated):
            state = evolve_prompt_version(None, envelope.tenant_id, event, meta)
            assert state is not None
            try:
                await self._col.insert_one(prompt_version_to_doc(state))
            except DuplicateKeyError:
                pass  # a version never changes when created: an earlier apply wrote it
        elif isinstance(event, PromptDeleted):
            # the projector applies one stream at a time, so this is the only writer of these documents
            await self._col.update_many(
                {
                    "tenant_id": envelope.tenant_id,
                    "prompt_id": event.prompt_id,
                    "_version": {"$lt": meta.stream_version},
                },
                {
                    "$set": {
                        "status": "deprecated",
                        "prompt_deleted": True,
                        "updated_at": meta.occurred_at,
                        "_version": meta.stream_version,
                    }
                },
            )

    async def reset(self) -> None:
        await delete_matching(self._col, {})


def prompt_projections(db: AsyncDatabase[dict[str, Any]]) -> list[Projection]:
    return [PromptsProjection(db), PromptVersionsProjection(db)]
