"""Wires the agent-registry service: routes, projections, indexes, consumers and the adapters
behind the ports, for the core (projects, agents, versions) and every feature area."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.service import Runtime, ServiceSpec

from . import datasets, experiments, prompts, tools
from .adapters.mongo_views import MongoRegistryViews, ensure_indexes
from .adapters.runtime_recorder import RuntimeEventRecorder
from .application.ports import RegistryPorts
from .entrypoints.api import ROUTERS
from .entrypoints.http import install_registry_error_handler
from .features import Feature
from .migrations import demo_sample_data
from .projections import all_projections

FEATURES: tuple[Feature, ...] = (prompts.FEATURE, tools.FEATURE, datasets.FEATURE, experiments.FEATURE)


def build_ports(runtime: Runtime) -> RegistryPorts:
    return RegistryPorts(views=MongoRegistryViews(runtime.db), recorder=RuntimeEventRecorder(runtime))


def _wire(app: FastAPI) -> None:
    app.state.registry_ports = build_ports(app.state.runtime)
    install_registry_error_handler(app)
    for feature in FEATURES:
        if feature.setup:
            feature.setup(app)


def _projections(db: AsyncDatabase[dict[str, Any]]) -> list[Any]:
    return [*all_projections(db), *(p for f in FEATURES for p in f.projections(db))]


async def _indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    await ensure_indexes(db)
    for feature in FEATURES:
        if feature.indexes:
            await feature.indexes(db)


async def _migrations(runtime: Runtime) -> None:
    await demo_sample_data(runtime)
    for feature in FEATURES:
        if feature.migrations:
            await feature.migrations(runtime)


SPEC = ServiceSpec(
    name="agent-registry",
    title="AI Lab Agent Registry",
    description=(
        "Projects, agents and versions, prompts, tools, datasets and experiments, event-sourced. Internal: "
        "the gateway forwards the public `/v1/tenants/{tenant_id}/...` routes here with the internal token."
    ),
    routers=[*ROUTERS, *(r for f in FEATURES for r in f.routers)],
    projections=_projections,
    indexes=_indexes,
    consumers=[c for f in FEATURES for c in f.consumers],
    openapi_tags=[
        {"name": "projects", "description": "Workspaces that group agents."},
        {"name": "agents", "description": "Agents: name, type, project, tags, metadata, latest version."},
        {
            "name": "agent-versions",
            "description": "Immutable, numbered versions of an agent's flow graph and "
            "config, and their stored files.",
        },
        *(t for f in FEATURES for t in f.openapi_tags),
    ],
    extra_setup=_wire,
    migrations=_migrations,
)
