"""Events of experiment definitions and runs requested (agent-registry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

EVENTS: list[tuple[str, int, type[BaseModel]]] = []

# (event_type, from_version, function turning a v(from_version) payload into v(from_version + 1))
UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
