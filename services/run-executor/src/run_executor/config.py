"""Settings of the run-executor service (environment variables; see ServiceSettings for the shared ones).

Providers: the OpenAI-compatible endpoint (`OPENAI_BASE_URL`, any server speaking chat completions),
Anthropic (`ANTHROPIC_BASE_URL`), Bedrock Converse (`BEDROCK_REGION`, `BEDROCK_ENDPOINT`), and the
built-in `local` provider, always on. Their credentials are secret *references*
(`OPENAI_SECRET_REF` ...) resolved per call by `adapters/secrets.TenantEnvSecretResolver`:
`AILAB_SECRET_<TENANT>_<REF>`, then `AILAB_SECRET_<REF>` (upper-cased, other characters `_`), so
`AILAB_SECRET_OPENAI=sk-...` serves every tenant and `AILAB_SECRET_ACME_OPENAI` only tenant `acme`.
For Bedrock the secret is the JSON object of AWS credentials. Secret values are never logged.
"""

from __future__ import annotations

from pydantic import Field

from ailab_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "run-executor"
    port: int = 8002
    agent_registry_url: str = Field(
        default="http://127.0.0.1:8001", description="Internal URL of agent-registry (experiment examples)."
    )

    # --- providers
    openai_base_url: str = Field(default="https://api.openai.com", description="Without /v1.")
    openai_secret_ref: str = "openai"
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_secret_ref: str = "anthropic"
    bedrock_region: str = "us-east-1"
    bedrock_endpoint: str = Field(
        default="", description="Empty: https://bedrock-runtime.<region>.amazonaws.com"
    )
    bedrock_secret_ref: str = "bedrock"
    provider_timeout_s: float = Field(default=60.0, gt=0, description="One attempt of a provider call.")
    local_provider_latency_s: float = Field(default=0.0, ge=0, description="Test knob of the local provider.")

    # --- runs
    run_default_timeout_s: float = Field(default=120.0, gt=0)
    run_max_timeout_s: float = Field(default=3600.0, gt=0)
    run_default_max_steps: int = Field(default=100, ge=1)
    run_max_steps: int = Field(default=1000, ge=1)
    run_max_tool_rounds: int = Field(default=5, ge=0)
    run_max_inputs_bytes: int = Field(default=256 * 1024, ge=1024)

    # --- registry views (fed from Kafka): how long a lookup waits for an event still in flight
    registry_view_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="A run or experiment naming an agent version, prompt or tool the executor's views do "
        "not have yet waits this long for it before failing as unknown.",
    )

    # --- retention of run data (a periodic job; runs and their events are kept)
    run_log_retention_days: float = Field(
        default=30.0, gt=0, description="Logs and spans of runs finished longer ago are deleted."
    )
    run_claim_retention_days: float = Field(
        default=1.0, gt=0, description="Executor claims of runs finished longer ago are deleted."
    )
    run_retention_interval_s: float = Field(default=3600.0, gt=0, description="Between two cleanup passes.")
    run_retention_batch: int = Field(default=1000, ge=1, le=10_000, description="Documents per delete.")

    # --- concurrency per plan (maxConcurrentRuns); a tenant's queue holds queue_factor x its limit
    max_concurrent_runs_free: int = Field(default=2, ge=1)
    max_concurrent_runs_pro: int = Field(default=10, ge=1)
    max_concurrent_runs_enterprise: int = Field(default=50, ge=1)
    run_queue_factor: int = Field(default=2, ge=0)

    # --- crash recovery
    executor_heartbeat_interval_s: float = Field(default=5.0, gt=0)
    executor_lease_ttl_s: float = Field(default=20.0, gt=0)
    executor_sweep_interval_s: float = Field(default=10.0, gt=0)
    executor_shutdown_grace_s: float = Field(default=15.0, ge=0)

    def plan_limits(self) -> dict[str, int]:
        return {
            "free": self.max_concurrent_runs_free,
            "pro": self.max_concurrent_runs_pro,
            "enterprise": self.max_concurrent_runs_enterprise,
        }
