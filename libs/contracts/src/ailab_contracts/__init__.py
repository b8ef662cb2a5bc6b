"""AI Lab event contracts: the envelope, every event model, and the registry that parses them."""

from .envelope import EventEnvelope, utc_now
from .events import registry as _registry_events
from .events import tenancy as _tenancy_events
from .registry import EventRegistry, UnknownEventType, new_envelope


def build_registry() -> EventRegistry:
    """The registry of every published (event_type, schema_version)."""
    reg = EventRegistry()
    for module in (_tenancy_events, _registry_events):
        for event_type, version, model in module.EVENTS:
            reg.register(event_type, version, model)
    reg.upcaster("registry.ProjectCreated", 1)(_registry_events.upcast_project_created_v1)
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
