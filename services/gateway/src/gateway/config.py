"""Settings of the gateway (environment variables; see ServiceSettings for the shared ones)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ailab_runtime.settings import DEV_ENVIRONMENTS, ServiceSettings

DEV_ADMIN_PASSWORD = "ailab-admin-dev"
DEV_DEMO_PASSWORD = "ailab-demo-dev"


class Settings(ServiceSettings):
    service_name: str = "gateway"
    port: int = 8000

    agent_registry_url: str = "http://127.0.0.1:8001"
    run_executor_url: str = "http://127.0.0.1:8002"
    usage_meter_url: str = "http://127.0.0.1:8003"
    billing_url: str = "http://127.0.0.1:8004"
    toolset_url: str = "http://127.0.0.1:8005"
    monitor_url: str = "http://127.0.0.1:8006"
    upstream_timeout_s: float = 15.0

    jwt_private_key_path: str = Field(
        default=".data/gateway/jwt-signing-key.pem",
        description="PEM of the ES256 signing key; generated on first start if missing (development only).",
    )
    jwt_issuer: str = "ailab-gateway"
    jwt_audience: str = "ailab"
    access_token_ttl_s: int = 3600
    oidc_jwks_url: str | None = Field(default=None, description="JWKS of an external OIDC issuer to accept.")
    oidc_issuer: str | None = None
    oidc_audience: str | None = None

    platform_admin_email: str = "admin@ailab.local"
    platform_admin_password: str = DEV_ADMIN_PASSWORD
    demo_admin_email: str = "demo-admin@ailab.local"
    demo_admin_password: str = DEV_DEMO_PASSWORD

    login_max_attempts: int = Field(default=10, description="Sign-in attempts per email per window.")
    login_max_attempts_per_ip: int = Field(
        default=300, description="Sign-in attempts per client ip per window."
    )
    login_window_s: int = 60
    invite_ttl_s: int = 7 * 24 * 3600

    @model_validator(mode="after")
    def _refuse_dev_passwords(self) -> Settings:
        if self.environment not in DEV_ENVIRONMENTS and (
            self.platform_admin_password == DEV_ADMIN_PASSWORD
            or self.demo_admin_password == DEV_DEMO_PASSWORD
        ):
            raise ValueError(
                "PLATFORM_ADMIN_PASSWORD and DEMO_ADMIN_PASSWORD must be set outside development and test"
            )
        return self
