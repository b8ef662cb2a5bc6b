"""The providers of one process, by name, and the single entry point the executor calls."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from .anthropic import AnthropicConfig, AnthropicProvider
from .base import (
    ErrorCode,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    SecretResolver,
    StreamEnd,
    StreamEvent,
)
from .bedrock import BedrockConfig, BedrockProvider
from .http_provider import HttpProviderConfig
from .local import LocalProvider, LocalProviderConfig
from .openai import OpenAIConfig, OpenAIProvider
from .resilience import CircuitBreakerRegistry

ProviderConfig = OpenAIConfig | AnthropicConfig | BedrockConfig | LocalProviderConfig


class ProviderRegistry:
    """Dispatches each request to the provider named by `req.provider`."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers: dict[str, Provider] = {}
        for provider in providers:
            if provider.name in self._providers:
                raise ValueError(f"two providers are named {provider.name!r}")
            self._providers[provider.name] = provider

    @property
    def names(self) -> list[str]:
        return sorted(self._providers)

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise ProviderError(
                ErrorCode.BAD_REQUEST,
                f"unknown provider {name!r} (configured: {', '.join(self.names)})",
                provider=name,
            ) from None

    async def complete(self, req: ProviderRequest) -> ProviderResponse:
        return await self.get(req.provider).complete(req)

    def stream(self, req: ProviderRequest) -> AsyncIterator[StreamEvent]:
        return self.get(req.provider).stream(req)

    async def execute(
        self, req: ProviderRequest, on_event: Callable[[StreamEvent], Awaitable[None]] | None = None
    ) -> ProviderResponse:
        """`complete`, or (when `req.stream`) stream while passing each event to `on_event` and
        return the final response."""
        if not req.stream:
            return await self.complete(req)
        final: ProviderResponse | None = None
        async with contextlib.aclosing(self.stream(req)) as events:  # type: ignore[type-var]
            async for event in events:
                if on_event is not None:
                    await on_event(event)
                if isinstance(event, StreamEnd):
                    final = event.response
        if final is None:
            raise ProviderError(
                ErrorCode.BAD_RESPONSE, "stream ended without a final event", provider=req.provider
            )
        return final

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()


def build_provider(
    config: ProviderConfig | HttpProviderConfig,
    secrets: SecretResolver,
    *,
    breakers: CircuitBreakerRegistry | None = None,
) -> Provider:
    if isinstance(config, LocalProviderConfig):
        return LocalProvider(config)
    if isinstance(config, OpenAIConfig):
        return OpenAIProvider(config, secrets, breakers=breakers)
    if isinstance(config, AnthropicConfig):
        return AnthropicProvider(config, secrets, breakers=breakers)
    if isinstance(config, BedrockConfig):
        return BedrockProvider(config, secrets, breakers=breakers)
    raise TypeError(f"no adapter for {type(config).__name__}")


def build_registry(
    configs: Iterable[ProviderConfig | HttpProviderConfig],
    secrets: SecretResolver,
    *,
    breakers: CircuitBreakerRegistry | None = None,
) -> ProviderRegistry:
    """One adapter per config, sharing one circuit-breaker registry (one breaker per base URL)."""
    shared = breakers or CircuitBreakerRegistry()
    return ProviderRegistry(build_provider(c, secrets, breakers=shared) for c in configs)
