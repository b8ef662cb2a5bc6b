"""`artifacts` view: the files of each published version, keyed by their artifact path
`tenants/{tenant}/agents/{agent}/versions/{n}/{flow-graph.json|config.json}`. Written once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_contracts.events.registry import AgentVersionPublished
from ailab_runtime.mongo_server import delete_matching

from ..adapters.documents import ARTIFACTS
from ..domain.model import EventMeta, artifact_documents, artifact_path


class ArtifactsProjection:
    name = ARTIFACTS

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[ARTIFACTS]

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        if not isinstance(event, AgentVersionPublished):
            return
        meta = EventMeta.of(envelope)
        tenant_id = envelope.tenant_id
        for name, content in artifact_documents(event).items():
            doc = {
                "_id": artifact_path(tenant_id, event.agent_id, event.version, name),
                "tenant_id": tenant_id,
                "agent_id": event.agent_id,
                "version": event.version,
                "name": name,
                "media_type": "application/json",
                "content": content,
                "created_at": meta.occurred_at,
                "_version": meta.stream_version,
            }
            try:
                await self._col.insert_one(doc)
            except DuplicateKeyError:
                pass  # a version's files never change: already written by an earlier apply

    async def reset(self) -> None:
        await delete_matching(self._col, {})
