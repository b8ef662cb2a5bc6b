"""Settings of the billing service (environment variables; see ServiceSettings for the shared ones)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ailab_runtime.settings import DEV_ENVIRONMENTS, ServiceSettings

DEV_STRIPE_API_KEY = "sk_test_123"
DEV_WEBHOOK_SECRET = "whsec_dev_change_me"


class Settings(ServiceSettings):
    service_name: str = "billing"
    port: int = 8004

    stripe_api_key: str = Field(default=DEV_STRIPE_API_KEY, description="STRIPE_API_KEY (sk_test_/sk_live_).")
    stripe_api_base: str = Field(
        default="https://api.stripe.com", description="STRIPE_API_BASE; stripe-mock in tests."
    )
    stripe_webhook_secret: str = Field(
        default=DEV_WEBHOOK_SECRET, description="STRIPE_WEBHOOK_SECRET: signing secret of the endpoint."
    )
    stripe_webhook_tolerance_s: int = Field(
        default=300, ge=1, description="STRIPE_WEBHOOK_TOLERANCE_S: max age of a signed webhook."
    )
    stripe_meter_event_prefix: str = Field(
        default="ailab_", description="Meter event names are `<prefix><meter>` (e.g. ailab_tokens_in)."
    )
    stripe_price_prefix: str = Field(
        default="price_ailab_",
        description="Stripe price ids are `<prefix><plan>_base` and `<prefix><plan>_<meter>` (lookup "
        "convention; create them once in the Stripe account).",
    )
    stripe_timeout_s: float = 10.0
    billing_grace_period_s: float = Field(
        default=3 * 24 * 3600,
        ge=0,
        description="BILLING_GRACE_PERIOD_S: after invoice.payment_failed, suspend once this has passed "
        "without invoice.paid (0 = at once).",
    )
    usage_meter_url: str = Field(default="http://127.0.0.1:8003", description="USAGE_METER_URL.")
    usage_sync_max_attempts: int = Field(default=8, ge=1, description="USAGE_SYNC_MAX_ATTEMPTS.")
    usage_sync_backoff_s: float = Field(
        default=30.0, ge=0, description="USAGE_SYNC_BACKOFF_S: first retry delay, doubled per attempt."
    )
    usage_sync_backoff_max_s: float = Field(default=3600.0, ge=0)
    billing_loop_interval_s: float = Field(
        default=5.0, gt=0, description="BILLING_LOOP_INTERVAL_S: how often retries, grace and invoices run."
    )
    invoice_close_delay_s: float = Field(
        default=2 * 24 * 3600,
        ge=0,
        description="INVOICE_CLOSE_DELAY_S: a month is invoiced this long after it ends (late days).",
    )

    @field_validator("stripe_api_base")
    @classmethod
    def _default_api_base(cls, value: str) -> str:
        return value.strip().rstrip("/") or "https://api.stripe.com"  # an empty value means Stripe itself

    @model_validator(mode="after")
    def _refuse_dev_stripe_secrets(self) -> Settings:
        if self.environment not in DEV_ENVIRONMENTS:
            if self.stripe_webhook_secret == DEV_WEBHOOK_SECRET:
                raise ValueError("STRIPE_WEBHOOK_SECRET must be set outside development and test")
            if self.stripe_api_key == DEV_STRIPE_API_KEY:
                raise ValueError("STRIPE_API_KEY must be set outside development and test")
        return self
