"""Wires the agent-registry service: routes, projections, indexes, and the adapters behind the ports."""

from __future__ import annotations

from fastapi import FastAPI

from ailab_runtime.service import Runtime, ServiceSpec

from .adapters.mongo_views import MongoRegistryViews, ensure_indexes
from .adapters.runtime_recorder import RuntimeEventRecorder
from .application.ports import RegistryPorts
from .entrypoints.api import ROUTERS
from .entrypoints.http import install_registry_error_handler
from .migrations import demo_sample_data
from .projections import all_projections


def build_ports(runtime: Runtime) -> RegistryPorts:
    return RegistryPorts(views=MongoRegistryViews(runtime.db), recorder=RuntimeEventRecorder(runtime))


def _wire(app: FastAPI) -> None:
    app.state.registry_ports = build_ports(app.state.runtime)
    install_registry_error_handler(app)


SPEC = ServiceSpec(
    name="agent-registry",
    title="AI Lab Agent Registry",
    description=(
        "Projects, agents and immutable agent versions (flow graph + config), event-sourced. Internal: "
        "the gateway forwards the public `/v1/tenants/{tenant_id}/...` routes here with the internal token."
    ),
    routers=list(ROUTERS),
    projections=all_projections,
    indexes=ensure_indexes,
    openapi_tags=[
        {"name": "projects", "description": "Workspaces that group agents."},
        {"name": "agents", "description": "Agents: name, type, project, tags, metadata, latest version."},
        {
            "name": "agent-versions",
            "description": "Immutable, numbered versions of an agent's flow graph and "
            "config, and their stored files.",
        },
    ],
    extra_setup=_wire,
    migrations=demo_sample_data,
)
