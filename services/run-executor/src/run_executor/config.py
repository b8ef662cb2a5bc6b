"""Settings of the run-executor service (environment variables; see ServiceSettings for the shared ones)."""

from ailab_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "run-executor"
    port: int = 8002
