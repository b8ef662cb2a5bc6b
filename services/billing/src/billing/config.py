"""Settings of the billing service (environment variables; see ServiceSettings for the shared ones)."""

from ailab_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "billing"
    port: int = 8004
