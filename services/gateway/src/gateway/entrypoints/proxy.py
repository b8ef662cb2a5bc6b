"""Routes the gateway forwards to agent-registry after authentication and authorisation.

Each route is declared explicitly (method, path, permission) so the permission matrix is visible
in one table and in the OpenAPI document; request and response schemas are merged from the
registry's own OpenAPI document (see openapi.py).
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from ailab_runtime.errors import ErrorResponse

from ..application.tokens import Principal
from ..domain.roles import Permission
from .deps import tenant_scope

R, W = Permission.REGISTRY_READ, Permission.REGISTRY_WRITE
T = "/v1/tenants/{tenant_id}"

REGISTRY_ROUTES: list[tuple[str, str, Permission, str]] = [
    ("GET", f"{T}/projects", R, "List projects"),
    ("POST", f"{T}/projects", W, "Create a project"),
    ("GET", f"{T}/projects/{{project_id}}", R, "Get a project"),
    ("PUT", f"{T}/projects/{{project_id}}", W, "Update a project"),
    ("DELETE", f"{T}/projects/{{project_id}}", W, "Delete a project"),
    ("GET", f"{T}/agents", R, "List agents"),
    ("POST", f"{T}/agents", W, "Create an agent"),
    ("GET", f"{T}/agents/{{agent_id}}", R, "Get an agent"),
    ("PUT", f"{T}/agents/{{agent_id}}", W, "Update an agent"),
    ("DELETE", f"{T}/agents/{{agent_id}}", W, "Delete an agent"),
    ("GET", f"{T}/agents/{{agent_id}}/versions", R, "List versions of an agent"),
    ("POST", f"{T}/agents/{{agent_id}}/versions", W, "Publish a new agent version"),
    ("GET", f"{T}/agents/{{agent_id}}/versions/{{version}}", R, "Get an agent version"),
    ("PUT", f"{T}/agents/{{agent_id}}/versions/{{version}}", W, "Update an agent version's status"),
    (
        "GET",
        f"{T}/agents/{{agent_id}}/versions/{{version}}/files/{{name}}",
        R,
        "Get a version artifact (flow-graph.json, config.json)",
    ),
]


def _forwarder(permission: Permission) -> Callable[..., Awaitable[Response]]:
    async def forward(
        request: Request, principal: Annotated[Principal, Depends(tenant_scope(permission))]
    ) -> Response:
        upstream = request.app.state.upstreams["agent-registry"]
        reply = await upstream.send(
            request.method,
            request.url.path,
            principal=principal,
            params=list(request.query_params.multi_items()),
            incoming_headers=dict(request.headers),
            body=await request.body(),
        )
        headers = {
            k: v
            for k, v in reply.headers.items()
            if k.lower() in ("etag", "location", "retry-after", "content-disposition")
        }
        return Response(
            content=reply.content,
            status_code=reply.status_code,
            headers=headers,
            media_type=reply.headers.get("content-type"),
        )

    return forward


def registry_router() -> APIRouter:
    router = APIRouter(tags=["registry"])
    errors = {s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 412, 422, 503)}
    for method, path, permission, summary in REGISTRY_ROUTES:
        router.add_api_route(
            path,
            _forwarder(permission),
            methods=[method],
            summary=summary,
            responses=errors,
            name=f"{method.lower()}:{path}",
            description=f"Requires permission `{permission.value}`. Forwarded to agent-registry.",
        )
    return router
