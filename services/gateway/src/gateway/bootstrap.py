"""Wires the gateway: the only place that builds adapters and hands them to routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import topics
from ailab_runtime.service import ConsumerSpec, Runtime, ServiceSpec

from .adapters.signing_keys import SigningKey
from .adapters.upstream import Upstream
from .application.billing_events import billing_events_handler
from .application.quotas import QuotaBook
from .application.rate_limit import SlidingWindowLimiter
from .application.tenancy import TenancyService
from .application.tokens import TokenService
from .application.usage_ledger import project_ledger_handler
from .config import Settings
from .entrypoints import api_auth, api_system, api_tenants
from .entrypoints.audit import install_audit
from .entrypoints.openapi import install_openapi
from .entrypoints.proxy import forwarding_router
from .migrations import initial_tenant_setup
from .projections.tenancy import tenancy_views

DESCRIPTION = """Public REST API of AI Lab.

Authenticate with `POST /v1/auth/token` (email + password) and send `Authorization: Bearer <token>`;
tenant API keys (`ailab_k_...`) and tokens of a configured OIDC issuer are accepted the same way.
Every `/v1/tenants/{tenant_id}/...` route requires the token's tenant to match (platform admins excepted).
Errors always have the shape `{"error": {"code", "message", "request_id", "details"}}`.
"""


def wire(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    key = SigningKey.load_or_create(settings.jwt_private_key_path)
    tokens = TokenService(settings, key)
    runtime.extras["tokens"] = tokens
    runtime.extras["tenancy"] = TenancyService(runtime, tokens, settings)
    runtime.extras["quotas"] = QuotaBook(runtime.db)
    upstreams = {
        "agent-registry": Upstream(
            "agent-registry",
            settings.agent_registry_url,
            settings.internal_token,
            settings.upstream_timeout_s,
        ),
    }
    for name, url in (
        ("run-executor", settings.run_executor_url),
        ("usage-meter", settings.usage_meter_url),
        ("billing", settings.billing_url),
        ("toolset", settings.toolset_url),
        ("monitor", settings.monitor_url),
    ):
        upstreams[name] = Upstream(name, url, settings.internal_token, settings.upstream_timeout_s)
    runtime.extras["upstreams"] = upstreams
    runtime.closers.extend(u.close for u in upstreams.values())


def setup_app(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    assert isinstance(settings, Settings)
    app.state.tokens = runtime.extras["tokens"]
    app.state.tenancy = runtime.extras["tenancy"]
    app.state.upstreams = runtime.extras["upstreams"]
    app.state.quotas = runtime.extras["quotas"]
    app.state.login_limiter = SlidingWindowLimiter(settings.login_max_attempts, settings.login_window_s)
    app.state.ip_limiter = SlidingWindowLimiter(settings.login_max_attempts_per_ip, settings.login_window_s)
    install_audit(app)
    install_openapi(app)


async def indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    await db["users"].create_index([("tenant_id", 1), ("_id", 1)])
    await db["api_keys"].create_index([("tenant_id", 1), ("_id", 1)])
    await db["audit"].create_index([("tenant_id", 1), ("_id", 1)])
    await db["tenant_projects"].create_index("tenant_id")
    await db["quota_states"].create_index("tenant_id")


SPEC = ServiceSpec(
    name="gateway",
    title="AI Lab API",
    description=DESCRIPTION,
    routers=[
        api_auth.router,
        api_tenants.router,
        api_tenants.admin_router,
        api_system.router,
        forwarding_router(),
    ],
    projections=tenancy_views,
    consumers=[
        ConsumerSpec(
            topics=[topics.REGISTRY],
            group="gateway.project-ledger",
            handler_factory=lambda rt: project_ledger_handler(rt.db),
            event_types={"registry.ProjectCreated", "registry.ProjectDeleted"},
        ),
        ConsumerSpec(
            topics=[topics.USAGE],
            group="gateway.quota-states",
            handler_factory=lambda rt: rt.extras["quotas"].handler(),
            event_types={"usage.QuotaStateChanged"},
        ),
        ConsumerSpec(
            topics=[topics.BILLING],
            group="gateway.billing-decisions",
            handler_factory=lambda rt: billing_events_handler(rt.extras["tenancy"]),
            event_types={"billing.PlanChanged", "billing.AccountStatusChanged"},
        ),
    ],
    indexes=indexes,
    migrations=initial_tenant_setup,
    wire=wire,
    extra_setup=setup_app,
    internal_api=False,
    openapi_tags=[
        {"name": "auth", "description": "Sign-in, invites, token keys"},
        {"name": "tenants", "description": "Tenant settings, users, API keys, audit"},
        {
            "name": "registry",
            "description": "Projects, agents, prompts, tools, datasets, experiments (agent-registry)",
        },
        {"name": "runs", "description": "Agent runs, logs and traces (served by run-executor)"},
        {"name": "usage", "description": "Usage ingestion, daily/monthly usage, analytics (usage-meter)"},
        {"name": "billing", "description": "Plan, invoices, rated usage, Stripe webhooks (billing)"},
        {"name": "admin", "description": "Platform administration (platform_admin only)"},
        {"name": "health", "description": "Probes"},
    ],
)
