"""Settings of the agent-registry service (environment variables; see ServiceSettings for the shared ones)."""

from ailab_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "agent-registry"
    port: int = 8001
