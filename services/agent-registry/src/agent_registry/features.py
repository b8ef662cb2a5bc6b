"""A feature area of the registry (prompts, tools, datasets, experiments): its routes, read models,
indexes, consumers and migrations. `bootstrap.py` composes every feature into the service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.projections import Projection
from ailab_runtime.service import ConsumerSpec, Runtime

Db = AsyncDatabase[dict[str, Any]]


def _no_projections(db: Db) -> Sequence[Projection]:
    return ()


@dataclass(frozen=True)
class Feature:
    name: str
    routers: Sequence[APIRouter] = ()
    projections: Callable[[Db], Sequence[Projection]] = _no_projections
    indexes: Callable[[Db], Awaitable[None]] | None = None
    consumers: Sequence[ConsumerSpec] = ()
    migrations: Callable[[Runtime], Awaitable[None]] | None = None
    setup: Callable[[FastAPI], None] | None = None  # e.g. error handlers or app.state wiring
    openapi_tags: Sequence[dict[str, str]] = field(default_factory=tuple)
