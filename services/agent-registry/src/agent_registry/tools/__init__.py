"""Tools: definitions an agent can call, either `http` (method, URL template with `{arg}`
placeholders, headers whose secrets are `secret_ref`s, host allowlist) or `builtin` (one of
`validation.BUILTINS`), with a JSON Schema of their arguments and a timeout.

Events `registry.ToolCreated`, `registry.ToolUpdated`, `registry.ToolDeleted` on the stream
`tool:{tenant}:{tool_id}`; view `tools`; names are unique per tenant through `tool_names` claims.
"""

from __future__ import annotations

from fastapi import FastAPI

from ailab_runtime.service import Runtime

from ..adapters.runtime_recorder import RuntimeEventRecorder
from ..features import Feature
from .api import router
from .ports import ToolPorts
from .projections import tool_projections
from .store import VIEWS, MongoToolNameClaims, MongoToolViews, ensure_indexes
from .validation import BUILTINS


def build_ports(runtime: Runtime) -> ToolPorts:
    return ToolPorts(
        views=MongoToolViews(runtime.db),
        recorder=RuntimeEventRecorder(runtime),
        claims=MongoToolNameClaims(runtime.db),
        stream_version=runtime.store.stream_version,
    )


def _setup(app: FastAPI) -> None:
    app.state.tool_ports = build_ports(app.state.runtime)


FEATURE = Feature(
    name="tools",
    routers=(router,),
    projections=tool_projections,
    indexes=ensure_indexes,
    setup=_setup,
    openapi_tags=(
        {
            "name": "tools",
            "description": "Tools agents can call: `http` tools (method, URL template, headers with secret "
            "references, host allowlist) and `builtin` tools ("
            + ", ".join(f"`{b}`" for b in BUILTINS)
            + "), each with a JSON Schema of its arguments and a timeout.",
        },
    ),
)

__all__ = ["FEATURE", "VIEWS", "build_ports"]
