"""AI Lab event contracts: the envelope, every event model, and the registry that parses them."""

from .envelope import EventEnvelope, utc_now
from .events import billing as _billing_events
from .events import datasets as _dataset_events
from .events import experiments as _experiment_events
from .events import prompts as _prompt_events
from .events import registry as _registry_events
from .events import runs as _run_events
from .events import tenancy as _tenancy_events
from .events import tools as _tool_events
from .events import usage as _usage_events
from .registry import EventRegistry, UnknownEventType, new_envelope

_MODULES = (
    _tenancy_events,
    _registry_events,
    _prompt_events,
    _tool_events,
    _dataset_events,
    _experiment_events,
    _run_events,
    _usage_events,
    _billing_events,
)


def build_registry() -> EventRegistry:
    """The registry of every published (event_type, schema_version)."""
    reg = EventRegistry()
    for module in _MODULES:
        for event_type, version, model in module.EVENTS:
            reg.register(event_type, version, model)
    reg.upcaster("registry.ProjectCreated", 1)(_registry_events.upcast_project_created_v1)
    for module in _MODULES[2:]:
        for event_type, from_version, step in module.UPCASTERS:
            reg.upcaster(event_type, from_version)(step)
    return reg


REGISTRY = build_registry()

__all__ = [
    "REGISTRY",
    "EventEnvelope",
    "EventRegistry",
    "UnknownEventType",
    "build_registry",
    "new_envelope",
    "utc_now",
]
