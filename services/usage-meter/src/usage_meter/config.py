"""Settings of the usage-meter service (environment variables; see ServiceSettings for the shared ones)."""

from ailab_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "usage-meter"
    port: int = 8003
