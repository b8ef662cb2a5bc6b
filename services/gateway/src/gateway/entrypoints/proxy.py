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
    # prompts
    ("GET", f"{T}/prompts", R, "List prompts"),
    ("POST", f"{T}/prompts", W, "Create a prompt"),
    ("GET", f"{T}/prompts/{{prompt_id}}", R, "Get a prompt"),
    ("PUT", f"{T}/prompts/{{prompt_id}}", W, "Update a prompt"),
    ("DELETE", f"{T}/prompts/{{prompt_id}}", W, "Delete a prompt"),
    ("GET", f"{T}/prompts/{{prompt_id}}/versions", R, "List versions of a prompt"),
    ("POST", f"{T}/prompts/{{prompt_id}}/versions", W, "Create a prompt version"),
    ("GET", f"{T}/prompts/{{prompt_id}}/versions/{{version}}", R, "Get a prompt version"),
    ("POST", f"{T}/prompts/{{prompt_id}}/versions/{{version}}/render", R, "Render a prompt version"),
    ("GET", f"{T}/prompts/{{prompt_id}}/diff", R, "Diff two prompt versions"),
    ("PUT", f"{T}/prompts/{{prompt_id}}/labels/{{label}}", W, "Point a label at a version"),
    ("DELETE", f"{T}/prompts/{{prompt_id}}/labels/{{label}}", W, "Remove a label"),
    # tools
    ("GET", f"{T}/tools", R, "List tools"),
    ("POST", f"{T}/tools", W, "Create a tool"),
    ("GET", f"{T}/tools/{{tool_id}}", R, "Get a tool"),
    ("PUT", f"{T}/tools/{{tool_id}}", W, "Update a tool"),
    ("DELETE", f"{T}/tools/{{tool_id}}", W, "Delete a tool"),
    # datasets
    ("GET", f"{T}/datasets", R, "List datasets"),
    ("POST", f"{T}/datasets", W, "Create a dataset"),
    ("GET", f"{T}/datasets/{{dataset_id}}", R, "Get a dataset"),
    ("PUT", f"{T}/datasets/{{dataset_id}}", W, "Update a dataset"),
    ("DELETE", f"{T}/datasets/{{dataset_id}}", W, "Delete a dataset and its file"),
    ("POST", f"{T}/datasets/{{dataset_id}}/upload", W, "Upload the dataset file (JSONL or CSV, streamed)"),
    ("GET", f"{T}/datasets/{{dataset_id}}/download", R, "Download the dataset file (streamed)"),
    ("GET", f"{T}/datasets/{{dataset_id}}/examples", R, "List examples of a dataset"),
    ("GET", f"{T}/datasets/{{dataset_id}}/examples/{{index}}", R, "Get one example"),
    ("GET", f"{T}/datasets/{{dataset_id}}/files/{{name}}", R, "Get a dataset artifact (schema.json)"),
    # experiments
    ("GET", f"{T}/experiments", R, "List experiments"),
    ("POST", f"{T}/experiments", W, "Create an experiment"),
    ("GET", f"{T}/experiments/{{experiment_id}}", R, "Get an experiment"),
    ("PUT", f"{T}/experiments/{{experiment_id}}", W, "Update an experiment"),
    ("POST", f"{T}/experiments/{{experiment_id}}/start", W, "Start an experiment"),
    ("GET", f"{T}/experiments/{{experiment_id}}/status", R, "Experiment status"),
    ("GET", f"{T}/experiments/{{experiment_id}}/results", R, "Experiment results"),
]


RUN_ROUTES: list[tuple[str, str, Permission, str]] = [
    ("GET", f"{T}/runs", Permission.RUNS_READ, "List runs (filters: agent_id, status, time range)"),
    ("POST", f"{T}/runs", Permission.RUNS_WRITE, "Start a run (optionally streamed as server-sent events)"),
    ("GET", f"{T}/runs/{{run_id}}", Permission.RUNS_READ, "Get a run"),
    ("PATCH", f"{T}/runs/{{run_id}}", Permission.RUNS_WRITE, "Update a run's status (cancel)"),
    ("DELETE", f"{T}/runs/{{run_id}}", Permission.RUNS_WRITE, "Delete a finished run"),
    ("GET", f"{T}/runs/{{run_id}}/logs", Permission.RUNS_READ, "Run logs (paginated)"),
    ("GET", f"{T}/runs/{{run_id}}/traces", Permission.RUNS_READ, "Run span tree"),
]


def _forwarder(permission: Permission, service: str = "agent-registry") -> Callable[..., Awaitable[Response]]:
    async def forward(
        request: Request, principal: Annotated[Principal, Depends(tenant_scope(permission))]
    ) -> Response:
        # Bodies stream both ways (dataset files can be large): nothing is held whole in memory.
        upstream = request.app.state.upstreams[service]
        return await upstream.forward(request, principal)

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


def runs_router() -> APIRouter:
    router = APIRouter(tags=["runs"])
    errors = {s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 422, 429, 503)}
    for method, path, permission, summary in RUN_ROUTES:
        router.add_api_route(
            path,
            _forwarder(permission, "run-executor"),
            methods=[method],
            summary=summary,
            responses=errors,
            name=f"{method.lower()}:{path}",
            description=f"Requires permission `{permission.value}`. Forwarded to run-executor.",
        )
    return router
