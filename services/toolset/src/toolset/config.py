"""Settings of the toolset service (environment variables; see ServiceSettings for the shared ones)."""

from ailab_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "toolset"
    port: int = 8005
