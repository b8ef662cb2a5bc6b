"""`projects` view: one document per project (deleted ones keep `status: "deleted"`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts.events.registry import ProjectCreated, ProjectDeleted, ProjectUpdated

from ..adapters.documents import PROJECTS, project_from_doc, project_to_doc
from ..domain.model import evolve_project
from .guarded import GuardedStateView


def _key(event: BaseModel) -> str | None:
    if isinstance(event, ProjectCreated | ProjectUpdated | ProjectDeleted):
        return event.project_id
    return None


class ProjectsProjection(GuardedStateView):
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        super().__init__(db, PROJECTS, _key, evolve_project, project_to_doc, project_from_doc)
