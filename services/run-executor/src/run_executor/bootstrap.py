"""Wires the run-executor service: the runs API, the `runs` projection, the registry/tenancy
consumers, indexes, the provider registry, the tool runner, the per-tenant scheduler and the run
executor (started and stopped with the HTTP app)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.service import Runtime, ServiceSpec

from .adapters import mongo_runs, registry_views
from .adapters.experiment_target import EngineTargetRunner
from .adapters.mongo_runs import (
    MongoExecutorLeases,
    MongoMeteredTotals,
    MongoRunLogs,
    MongoRunRetention,
    MongoRunSpans,
    MongoRunViews,
)
from .adapters.recorder import RuntimeEventRecorder
from .adapters.registry_views import RegistryViews
from .adapters.secrets import TenantEnvSecretResolver
from .application.executor import ExecutorPorts, ExecutorSettings, RunExecutor
from .application.handlers import RunLimits, RunPorts
from .application.progress import ProgressHub
from .application.retention import RetentionSettings, RunRetention
from .application.scheduler import TenantScheduler
from .config import Settings
from .engine.engine import EngineDeps
from .engine.tools import ToolRunner
from .entrypoints.api import ROUTERS
from .entrypoints.consumers import CONSUMERS
from .entrypoints.http import install_runs_error_handler
from .experiments import (
    EXPERIMENTS_CONSUMER,
    ProviderJudge,
    RegistryExampleSource,
    RegistryJudgePrompts,
    build_experiment_executor,
)
from .projections import RunsProjection
from .providers import (
    AnthropicConfig,
    BedrockConfig,
    LocalProviderConfig,
    OpenAIConfig,
    ProviderRegistry,
    build_registry,
)


def build_providers(settings: Settings, secrets: TenantEnvSecretResolver) -> ProviderRegistry:
    timeout = settings.provider_timeout_s
    return build_registry(
        [
            OpenAIConfig(
                base_url=settings.openai_base_url, secret_ref=settings.openai_secret_ref, timeout_s=timeout
            ),
            AnthropicConfig(
                base_url=settings.anthropic_base_url,
                secret_ref=settings.anthropic_secret_ref,
                timeout_s=timeout,
            ),
            BedrockConfig(
                base_url=settings.bedrock_endpoint,
                region=settings.bedrock_region,
                secret_ref=settings.bedrock_secret_ref,
                timeout_s=timeout,
            ),
            LocalProviderConfig(latency_s=settings.local_provider_latency_s),
        ],
        secrets=secrets,
    )


def build_retention(settings: Settings, db: AsyncDatabase[dict[str, Any]]) -> RunRetention:
    return RunRetention(
        MongoRunRetention(db, batch=settings.run_retention_batch),
        RetentionSettings(
            log_retention=timedelta(days=settings.run_log_retention_days),
            claim_retention=timedelta(days=settings.run_claim_retention_days),
            interval_s=settings.run_retention_interval_s,
        ),
    )


def _wire(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings), "the run executor needs its own Settings"
    db = runtime.db
    secrets = TenantEnvSecretResolver()
    providers = build_providers(settings, secrets)
    tools = ToolRunner(secrets)
    views = RegistryViews(db, wait_s=settings.registry_view_wait_s)
    run_views = MongoRunViews(db)
    logs, spans = MongoRunLogs(db), MongoRunSpans(db)
    recorder = RuntimeEventRecorder(runtime)
    executor = RunExecutor(
        ExecutorPorts(
            recorder=recorder,
            runs=run_views,
            logs=logs,
            spans=spans,
            leases=MongoExecutorLeases(db),
            metered=MongoMeteredTotals(db),
            plans=views,
        ),
        EngineDeps(providers=providers, registry=views, tools=tools),
        TenantScheduler(settings.plan_limits(), queue_factor=settings.run_queue_factor),
        ProgressHub(),
        ExecutorSettings(
            max_tool_rounds=settings.run_max_tool_rounds,
            heartbeat_interval_s=settings.executor_heartbeat_interval_s,
            lease_ttl_s=settings.executor_lease_ttl_s,
            sweep_interval_s=settings.executor_sweep_interval_s,
            shutdown_grace_s=settings.executor_shutdown_grace_s,
        ),
    )
    runtime.extras["registry_views"] = views
    runtime.extras["retention"] = build_retention(settings, db)
    runtime.extras["providers"] = providers
    runtime.extras["runs"] = RunPorts(
        views=run_views,
        agents=views,
        recorder=recorder,
        executor=executor,
        logs=logs,
        spans=spans,
        limits=RunLimits(
            default_timeout_s=settings.run_default_timeout_s,
            max_timeout_s=settings.run_max_timeout_s,
            default_max_steps=settings.run_default_max_steps,
            max_steps=settings.run_max_steps,
            max_inputs_bytes=settings.run_max_inputs_bytes,
        ),
    )
    runtime.closers.append(providers.aclose)
    runtime.closers.append(tools.aclose)
    runtime.closers.extend([logs.close, spans.close])  # after the executor stopped: last lines kept
    # Experiments (registry.ExperimentStarted): examples from the registry over internal HTTP, targets
    # run by the same engine and metered the same way as API runs.
    examples = RegistryExampleSource(settings.agent_registry_url, settings.internal_token)
    judge_prompts = RegistryJudgePrompts(settings.agent_registry_url, settings.internal_token)
    build_experiment_executor(
        runtime,
        target=EngineTargetRunner(
            EngineDeps(providers=providers, registry=views, tools=tools), views, executor
        ),
        source=examples,
        judge=ProviderJudge(providers),
        judge_prompts=judge_prompts,
    )


def _setup(app: FastAPI) -> None:
    """Error mapping, and the executor's start/stop around the app's lifespan: it starts after the
    runtime (database ready) and stops before it (runs in flight record their end first); the
    retention job runs beside it."""
    install_runs_error_handler(app)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as state:
            extras = application.state.runtime.extras
            ports: RunPorts = extras["runs"]
            retention: RunRetention = extras["retention"]
            await ports.executor.start()
            cleanup = asyncio.create_task(retention.run_forever(), name="run data retention")
            try:
                yield state
            finally:
                cleanup.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cleanup
                await ports.executor.stop()

    app.router.lifespan_context = lifespan


def _projections(db: AsyncDatabase[dict[str, Any]]) -> list[Any]:
    return [RunsProjection(db)]


async def _indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    await mongo_runs.ensure_indexes(db)
    await registry_views.ensure_indexes(db)


SPEC = ServiceSpec(
    name="run-executor",
    title="AI Lab Run executor",
    description=(
        "Executes agent runs on LLM providers (OpenAI-compatible, Anthropic, Bedrock, local): flow graphs, "
        "tools, per-tenant concurrency, usage and cost, logs and traces. Internal: the gateway forwards "
        "`/v1/tenants/{tenant_id}/runs...` here with the internal token."
    ),
    routers=ROUTERS,
    projections=_projections,
    consumers=[*CONSUMERS, EXPERIMENTS_CONSUMER],
    indexes=_indexes,
    wire=_wire,
    extra_setup=_setup,
    openapi_tags=[
        {
            "name": "runs",
            "description": "Agent runs: start (optionally streamed), list, get, cancel, delete, logs, spans.",
        }
    ],
)
