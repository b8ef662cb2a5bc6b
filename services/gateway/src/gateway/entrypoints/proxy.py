"""Routes the gateway forwards to the services behind it after authentication and authorisation.

Each route is declared explicitly (method, path, permission) so the permission matrix is visible
in one table and in the OpenAPI document; request and response schemas are merged from the
serving service's own OpenAPI document (see openapi.py).
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from ailab_runtime.errors import ErrorResponse

from ..application.quotas import PROVIDER_WORK_QUOTAS, STORAGE_QUOTAS
from ..application.tokens import Principal
from ..domain.roles import Permission
from .deps import require, tenant_scope

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


USAGE_ROUTES: list[tuple[str, str, Permission, str]] = [
    (
        "POST",
        f"{T}/usage/events",
        Permission.USAGE_WRITE,
        "Ingest up to 1,000 usage events (per-event results)",
    ),
    ("GET", f"{T}/usage/daily", Permission.USAGE_READ, "Daily usage per meter (range, meter, group_by)"),
    ("GET", f"{T}/usage/monthly", Permission.USAGE_READ, "Monthly usage per meter (range, meter, group_by)"),
    (
        "GET",
        f"{T}/analytics/dashboard",
        Permission.USAGE_READ,
        "Current month totals, top models/agents, series",
    ),
]

BILLING_ROUTES: list[tuple[str, str, Permission, str]] = [
    ("GET", f"{T}/billing/plan", Permission.BILLING_READ, "The tenant's plan, limits and rates"),
    ("PUT", f"{T}/billing/plan", Permission.BILLING_MANAGE, "Change plan (downgrades over limits refused)"),
    ("GET", f"{T}/billing/usage", Permission.BILLING_READ, "Rated usage of the current period"),
    ("GET", f"{T}/billing/invoices", Permission.BILLING_READ, "List invoices"),
    (
        "GET",
        f"{T}/billing/invoices/preview",
        Permission.BILLING_READ,
        "Invoice preview of the current period",
    ),
    ("GET", f"{T}/billing/invoices/{{invoice_id}}", Permission.BILLING_READ, "Get an invoice"),
]

# Platform-wide routes (no tenant in the path): (method, path, permission, summary, service)
ADMIN_ROUTES: list[tuple[str, str, Permission, str, str]] = [
    (
        "GET",
        "/v1/admin/usage/export",
        Permission.ADMIN_SYSTEM,
        "Export a tenant's usage events for a range (streamed CSV or JSONL)",
        "usage-meter",
    ),
    (
        "POST",
        "/v1/admin/usage/days/close",
        Permission.ADMIN_SYSTEM,
        "Close a tenant's day now (its totals become final and billable)",
        "usage-meter",
    ),
    (
        "GET",
        "/v1/admin/usage/ingest-stats",
        Permission.ADMIN_SYSTEM,
        "Usage ingestion counters: duplicates, dead letters, consumer lag",
        "usage-meter",
    ),
    (
        "GET",
        "/v1/admin/billing/reconcile",
        Permission.ADMIN_SYSTEM,
        "Usage-meter totals vs billing's rating vs what Stripe received, per tenant",
        "billing",
    ),
    (
        "POST",
        "/v1/admin/billing/usage-sync/{tenant_id}/{day}/retry",
        Permission.ADMIN_SYSTEM,
        "Send a closed day's usage to Stripe again, with a fresh attempt count",
        "billing",
    ),
]

# Routes refused with 429 `quota_exceeded` once one of the plan's quotas is used up: provider work
# (monthly requests and tokens) before anything reaches a provider, and uploads (storage).
QUOTA_GUARDED: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", f"{T}/runs"): PROVIDER_WORK_QUOTAS,
    ("POST", f"{T}/experiments/{{experiment_id}}/start"): PROVIDER_WORK_QUOTAS,
    ("POST", f"{T}/datasets/{{dataset_id}}/upload"): STORAGE_QUOTAS,
}

# Which service serves each tenant-scoped forwarded route, and the OpenAPI tag it is listed under.
FORWARDED: list[tuple[str, str, list[tuple[str, str, Permission, str]]]] = [
    ("agent-registry", "registry", REGISTRY_ROUTES),
    ("run-executor", "runs", RUN_ROUTES),
    ("usage-meter", "usage", USAGE_ROUTES),
    ("billing", "billing", BILLING_ROUTES),
]


def routes_of(service: str) -> list[tuple[str, str]]:
    """(method, path) of every route forwarded to `service` (for the OpenAPI merge)."""
    routes = [(m, p) for name, _, table in FORWARDED if name == service for m, p, _, _ in table]
    routes += [(m, p) for m, p, _, _, name in ADMIN_ROUTES if name == service]
    if service == "billing":
        routes.append(("POST", STRIPE_WEBHOOK_PATH))
    return routes


def _forwarder(
    permission: Permission, service: str, quotas: tuple[str, ...] = ()
) -> Callable[..., Awaitable[Response]]:
    async def forward(
        request: Request, principal: Annotated[Principal, Depends(tenant_scope(permission))]
    ) -> Response:
        if quotas:
            now = datetime.now(UTC)
            exceeded = await request.app.state.quotas.exceeded(request.path_params["tenant_id"], now, quotas)
            if exceeded is not None:
                raise exceeded.error(now)
        # Bodies stream both ways (dataset files can be large): nothing is held whole in memory.
        upstream = request.app.state.upstreams[service]
        return await upstream.forward(request, principal)

    return forward


def _admin_forwarder(permission: Permission, service: str) -> Callable[..., Awaitable[Response]]:
    async def forward(
        request: Request, principal: Annotated[Principal, Depends(require(permission))]
    ) -> Response:
        return await request.app.state.upstreams[service].forward(request, principal)

    return forward


def forwarding_router() -> APIRouter:
    """Every forwarded route, declared one by one so each is in the OpenAPI document."""
    router = APIRouter()
    errors = {s: {"model": ErrorResponse} for s in (401, 403, 404, 409, 412, 422, 429, 503)}
    for service, tag, table in FORWARDED:
        for method, path, permission, summary in table:
            guarded = QUOTA_GUARDED.get((method, path), ())
            router.add_api_route(
                path,
                _forwarder(permission, service, guarded),
                methods=[method],
                summary=summary,
                tags=[tag],
                responses=errors,
                name=f"{method.lower()}:{path}",
                description=f"Requires permission `{permission.value}`. Forwarded to {service}."
                + (
                    f" Refused with 429 `quota_exceeded` when the {'/'.join(guarded)} quota is used up."
                    if guarded
                    else ""
                ),
            )
    for method, path, permission, summary, service in ADMIN_ROUTES:
        router.add_api_route(
            path,
            _admin_forwarder(permission, service),
            methods=[method],
            summary=summary,
            tags=["admin"],
            responses=errors,
            name=f"{method.lower()}:{path}",
            description=f"Requires permission `{permission.value}`. Forwarded to {service}.",
        )
    router.add_api_route(
        STRIPE_WEBHOOK_PATH,
        _stripe_webhook,
        methods=["POST"],
        summary="Stripe webhook endpoint (signed by Stripe; no user authentication)",
        tags=["billing"],
        responses={400: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
        description="Forwarded byte for byte, with its `Stripe-Signature` header, to billing, which "
        "verifies the signature and processes each event once.",
    )
    return router


STRIPE_WEBHOOK_PATH = "/webhooks/stripe"


async def _stripe_webhook(request: Request) -> Response:
    # Stripe authenticates itself with the signature over the raw body, which billing checks.
    return await request.app.state.upstreams["billing"].forward(request, None)
