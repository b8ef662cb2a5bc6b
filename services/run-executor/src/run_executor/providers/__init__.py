"""LLM provider layer of the run executor: one interface (`base`), adapters speaking the real wire
formats (`openai`, `anthropic`, `bedrock`), the offline `local` provider, and shared resilience.

Typical wiring (bootstrap)::

    registry = build_registry(
        [OpenAIConfig(secret_ref="openai"), AnthropicConfig(secret_ref="anthropic"),
         BedrockConfig(region="eu-west-1", secret_ref="bedrock"), LocalProviderConfig()],
        secrets=my_secret_resolver,
    )
    response = await registry.execute(ProviderRequest(provider="openai", model="gpt-4o-mini", ...))
"""

from .anthropic import AnthropicConfig, AnthropicProvider
from .base import (
    ErrorCode,
    FinishReason,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    SecretResolver,
    StreamEnd,
    StreamEvent,
    TextDelta,
    TokenUsage,
    ToolCall,
    ToolCallDelta,
    UsageUpdate,
    collect,
)
from .bedrock import BedrockConfig, BedrockProvider
from .http_provider import HttpProviderConfig
from .local import LocalProvider, LocalProviderConfig
from .openai import OpenAIConfig, OpenAIProvider
from .registry import ProviderRegistry, build_provider, build_registry
from .resilience import (
    CircuitBreaker,
    CircuitBreakerRegistry,
    RetryPolicy,
    complete_until,
    parse_retry_after,
    stream_until,
)
from .secrets import EnvSecretResolver, StaticSecretResolver

__all__ = [
    "AnthropicConfig",
    "AnthropicProvider",
    "BedrockConfig",
    "BedrockProvider",
    "CircuitBreaker",
    "CircuitBreakerRegistry",
    "EnvSecretResolver",
    "ErrorCode",
    "FinishReason",
    "HttpProviderConfig",
    "LocalProvider",
    "LocalProviderConfig",
    "OpenAIConfig",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ProviderRegistry",
    "ProviderRequest",
    "ProviderResponse",
    "RetryPolicy",
    "SecretResolver",
    "StaticSecretResolver",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "TokenUsage",
    "ToolCall",
    "ToolCallDelta",
    "UsageUpdate",
    "build_provider",
    "build_registry",
    "collect",
    "complete_until",
    "parse_retry_after",
    "stream_until",
]
