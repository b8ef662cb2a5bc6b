"""Read models of the registry, one module per view; `all_projections(db)` lists them for the runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.projections import Projection

from .agent_versions import AgentVersionsProjection
from .agents import AgentsProjection
from .artifacts import ArtifactsProjection
from .projects import ProjectsProjection


def all_projections(db: AsyncDatabase[dict[str, Any]]) -> Sequence[Projection]:
    return [
        ProjectsProjection(db),
        AgentsProjection(db),
        AgentVersionsProjection(db),
        ArtifactsProjection(db),
    ]


__all__ = [
    "AgentVersionsProjection",
    "AgentsProjection",
    "ArtifactsProjection",
    "ProjectsProjection",
    "all_projections",
]
