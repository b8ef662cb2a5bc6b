"""`agents` view: one document per agent; every event of the agent stream (versions included)
moves its `_version`, which is the expected version of the next write to that stream."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts.events.registry import (
    AgentCreated,
    AgentDeleted,
    AgentUpdated,
    AgentVersionPublished,
    AgentVersionUpdated,
)

from ..adapters.documents import AGENTS, agent_from_doc, agent_to_doc
from ..domain.model import evolve_agent
from .guarded import GuardedStateView

_AGENT_STREAM_EVENTS = (AgentCreated, AgentUpdated, AgentDeleted, AgentVersionPublished, AgentVersionUpdated)


def _key(event: BaseModel) -> str | None:
    return event.agent_id if isinstance(event, _AGENT_STREAM_EVENTS) else None


class AgentsProjection(GuardedStateView):
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        super().__init__(db, AGENTS, _key, evolve_agent, agent_to_doc, agent_from_doc)
