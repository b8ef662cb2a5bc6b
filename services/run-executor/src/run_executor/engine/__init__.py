"""The flow engine: `execute_target(...)` runs an agent version's flow graph (or one prompt version,
see `prompt_target`) on the provider registry and the tool runner, reporting logs, spans, provider
calls and progress to an `ExecutionObserver`. Runs use it through `application.executor`;
experiment execution can call it the same way."""

from .engine import (
    EngineDeps,
    ExecutionError,
    ExecutionObserver,
    ExecutionResult,
    FlowTarget,
    Interrupt,
    Limits,
    PromptVersion,
    ProviderCall,
    RegistryLookup,
    RunScope,
    execute_target,
    prompt_target,
)

__all__ = [
    "EngineDeps",
    "ExecutionError",
    "ExecutionObserver",
    "ExecutionResult",
    "FlowTarget",
    "Interrupt",
    "Limits",
    "PromptVersion",
    "ProviderCall",
    "RegistryLookup",
    "RunScope",
    "execute_target",
    "prompt_target",
]
