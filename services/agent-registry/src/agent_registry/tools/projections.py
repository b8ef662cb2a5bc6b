"""`tools` view: one document per tool, the fold of its stream (deleted ones keep
`status: "deleted"`), guarded by `_version`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts.events.tools import ToolCreated, ToolDeleted, ToolUpdated
from ailab_runtime.projections import Projection

from ..projections.guarded import GuardedStateView
from .domain import evolve_tool
from .store import TOOLS, tool_from_doc, tool_to_doc


def _key(event: BaseModel) -> str | None:
    return event.tool_id if isinstance(event, ToolCreated | ToolUpdated | ToolDeleted) else None


class ToolsProjection(GuardedStateView):
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        super().__init__(db, TOOLS, _key, evolve_tool, tool_to_doc, tool_from_doc)


def tool_projections(db: AsyncDatabase[dict[str, Any]]) -> list[Projection]:
    return [ToolsProjection(db)]
