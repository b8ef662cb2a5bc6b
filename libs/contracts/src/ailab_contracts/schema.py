"""JSON Schema export of the envelope and every registered event version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .envelope import EventEnvelope
from .registry import EventRegistry


def schemas(registry: EventRegistry) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"envelope.json": EventEnvelope.model_json_schema()}
    for event_type in registry.event_types():
        for version in registry.versions(event_type):
            schema = registry.model(event_type, version).model_json_schema()
            schema["$id"] = f"urn:ailab:event:{event_type}:v{version}"
            schema["title"] = f"{event_type} v{version}"
            out[f"{event_type}.v{version}.json"] = schema
    return out


def export(registry: EventRegistry, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas(registry).items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
