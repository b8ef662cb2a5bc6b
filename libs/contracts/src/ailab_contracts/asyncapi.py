"""AsyncAPI 3.0 document of every topic and the event versions published on it."""

from __future__ import annotations

from typing import Any

from . import topics
from .envelope import EventEnvelope
from .registry import EventRegistry


def topic_of(event_type: str) -> str:
    return f"ailab.{event_type.split('.', 1)[0]}.events"


def asyncapi(registry: EventRegistry, version: str = "0.1.0") -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"EventEnvelope": EventEnvelope.model_json_schema()}
    for topic in topics.ALL:
        channel_messages: dict[str, Any] = {}
        for event_type in registry.event_types():
            if topic_of(event_type) != topic:
                continue
            for v in registry.versions(event_type):
                name = f"{event_type.replace('.', '_')}_v{v}"
                schemas[name] = registry.model(event_type, v).model_json_schema()
                messages[name] = {
                    "name": event_type,
                    "title": f"{event_type} v{v}",
                    "contentType": "application/json",
                    "headers": {
                        "type": "object",
                        "properties": {
                            "event_type": {"const": event_type},
                            "schema_version": {"const": str(v)},
                            "event_id": {"type": "string"},
                            "traceparent": {"type": "string"},
                        },
                    },
                    "payload": {
                        "allOf": [
                            {"$ref": "#/components/schemas/EventEnvelope"},
                            {
                                "type": "object",
                                "properties": {
                                    "event_type": {"const": event_type},
                                    "schema_version": {"const": v},
                                    "payload": {"$ref": f"#/components/schemas/{name}"},
                                },
                            },
                        ]
                    },
                }
                channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        channels[topic.replace(".", "_")] = {
            "address": topic,
            "description": f"Events of the `{topic.split('.')[1]}` context; key = tenant id. "
            f"Undeliverable messages go to `{topics.dlq(topic)}`.",
            "messages": channel_messages,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "AI Lab domain events",
            "version": version,
            "description": "Every topic and event version; `TOPIC_PREFIX` prefixes topic names.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }
