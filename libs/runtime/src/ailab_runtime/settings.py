"""Settings every service shares, read from the environment (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .kafka import DEFAULT_FETCH_MAX_WAIT_MS

DEV_INTERNAL_TOKEN = "dev-internal-token-change-me"
DEV_ENVIRONMENTS = ("development", "test")


class ServiceSettings(BaseSettings):
    """Base settings; each service subclasses it and sets its own `service_name` and port."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", env_file=None)

    service_name: str = "service"
    environment: str = Field(default="development", description="development | test | production")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    mongodb_database: str | None = Field(default=None, description="Defaults to ailab_<service>.")
    topic_prefix: str = Field(default="", description="Prefix for every topic (tests isolate runs with it).")

    internal_token: str = Field(
        default=DEV_INTERNAL_TOKEN, description="Shared secret the gateway sends to internal services."
    )
    relay_poll_interval_s: float = 0.05
    # Longest wait between outbox polls while nothing comes; appends in this process wake the relay
    # at once, so this only delays commits appended by other processes.
    relay_idle_poll_max_s: float = 1.0
    consumer_max_retries: int = 3
    kafka_fetch_max_wait_ms: int = Field(
        default=DEFAULT_FETCH_MAX_WAIT_MS,
        ge=100,
        le=10_000,
        description="How long the broker holds a consumer's fetch while it has no new records; it "
        "answers as soon as some arrive. Longer: fewer idle requests; but after a rebalance a consumer "
        "reads the partitions it gained only when its held fetch ends. At most 10 s: a fetch queued "
        "behind a held one must still answer within aiokafka's 40 s request timeout.",
    )

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        if self.environment not in DEV_ENVIRONMENTS and self.internal_token == DEV_INTERNAL_TOKEN:
            raise ValueError("INTERNAL_TOKEN must be set outside development and test")
        return self

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"ailab_{self.service_name.replace('-', '_')}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
