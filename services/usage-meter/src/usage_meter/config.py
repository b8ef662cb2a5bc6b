"""Settings of the usage-meter service (environment variables; see ServiceSettings for the shared ones)."""

from datetime import timedelta

from pydantic import Field

from ailab_runtime.settings import ServiceSettings

from .domain.model import AcceptanceRules


class Settings(ServiceSettings):
    service_name: str = "usage-meter"
    port: int = 8003

    late_arrival_window_s: float = Field(
        default=48 * 3600,
        description="Events older than this (at ingestion) are refused; days close after it.",
    )
    future_tolerance_s: float = Field(default=300, description="Clock skew tolerated for future timestamps.")
    acceptance_grace_s: float = Field(
        default=60,
        description="The consumer accepts events this much beyond the window (an event the bulk API "
        "accepted a moment earlier must not be refused); days close this much later too.",
    )
    day_close_delay_s: float = Field(
        default=3600, description="Extra wait after the late-arrival window before a day closes."
    )
    retention_days: int = Field(default=90, description="Ledger entries older than this are deleted.")
    consumer_max_records: int = Field(default=5000, description="Kafka records per consumer batch, at most.")
    consumer_max_events: int = Field(
        default=20000,
        description="Usage events per consumer batch, about (a bulk record carries up to 1,000): bigger "
        "batches write each aggregate document less often per event; smaller ones bound the lag.",
    )
    usage_consumer_enabled: bool = Field(
        default=True,
        description="Run the usage batch consumer (ledger + aggregates) in this process. Set false on "
        "API-only replicas so bulk ingestion and aggregation scale (and use CPU) separately.",
    )
    bulk_publish_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long the bulk API waits for Kafka's acknowledgement before answering 503 "
        "`kafka_unavailable` (keep it below the gateway's UPSTREAM_TIMEOUT_S).",
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000, description="Kafka group session timeout: how soon a dead consumer's partitions move."
    )
    closer_interval_s: float = 30.0
    retention_interval_s: float = 3600.0
    quota_interval_s: float = 0.5
    quota_warning_pct: int = 80
    quota_cache_ttl_s: float = Field(
        default=30.0,
        ge=0,
        description="How long quota evaluation trusts a tenant's limits and quota states as it last "
        "read them: usage this process applies is checked against them without reading anything, "
        "and only a changed state is evaluated from the database. Limit changes this process "
        "consumes take effect at once; ones another replica consumes, within this time. 0: read "
        "everything on every evaluation.",
    )

    def acceptance_rules(self) -> AcceptanceRules:
        return AcceptanceRules(
            late_arrival_window=timedelta(seconds=self.late_arrival_window_s),
            future_tolerance=timedelta(seconds=self.future_tolerance_s),
        )

    @property
    def day_close_after(self) -> timedelta:
        """From the end of a day to its close."""
        return timedelta(
            seconds=self.late_arrival_window_s + self.acceptance_grace_s + self.day_close_delay_s
        )
