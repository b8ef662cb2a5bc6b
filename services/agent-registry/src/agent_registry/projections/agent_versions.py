"""`agent_versions` view: one document per published version (`_id` = `<agent>:<zero-padded n>`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts.events.registry import AgentVersionPublished, AgentVersionUpdated

from ..adapters.documents import AGENT_VERSIONS, agent_version_from_doc, agent_version_to_doc, version_key
from ..domain.model import evolve_agent_version
from .guarded import GuardedStateView


def _key(event: BaseModel) -> str | None:
    if isinstance(event, AgentVersionPublished | AgentVersionUpdated):
        return version_key(event.agent_id, event.version)
    return None


class AgentVersionsProjection(GuardedStateView):
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        super().__init__(
            db, AGENT_VERSIONS, _key, evolve_agent_version, agent_version_to_doc, agent_version_from_doc
        )
