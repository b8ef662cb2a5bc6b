"""Domain errors; the HTTP layer maps each to a status and the shared error shape."""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base of every rule violation the registry reports to a caller."""

    code = "registry_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(RegistryError):
    code = "not_found"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident} not found", {"kind": kind, "id": ident})


class PreconditionFailed(RegistryError):
    """If-Match named a version the entity is no longer at."""

    code = "precondition_failed"

    def __init__(self, current_version: int) -> None:
        super().__init__(
            "If-Match does not match the current version; re-read the resource and retry",
            {"current_etag": f'"{current_version}"'},
        )


class InvalidFlowGraph(RegistryError):
    code = "invalid_flow_graph"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"flow graph is invalid ({len(problems)} problem(s))", problems)
        self.problems = problems


class InvalidValue(RegistryError):
    """A free-form value (metadata, config, node config) that cannot be stored as given."""

    code = "invalid_value"

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"request has {len(problems)} value(s) that cannot be stored", problems)
        self.problems = problems


class InvalidReference(RegistryError):
    """The body names another entity that does not exist in this tenant."""

    code = "invalid_reference"

    def __init__(self, field: str, kind: str, ident: str) -> None:
        super().__init__(f"{field}: {kind} {ident} not found", {"field": field, "id": ident})


class AgentArchived(RegistryError):
    code = "agent_archived"

    def __init__(self, agent_id: str) -> None:
        super().__init__(
            f"agent {agent_id} is archived; set its status to active or inactive before publishing",
            {"agent_id": agent_id},
        )
