"""Ports of the prompt use cases: the read models they query and the recorder they write with
(MongoDB adapters in `store.py`, in-memory fakes in `memory.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ailab_runtime.ids import new_id

from ..application.ports import EventRecorder, ListFilter
from .domain import Prompt, PromptVersion


class PromptViews(Protocol):
    """Read models, always scoped by tenant. `prompt` returns deleted prompts too (the use case
    decides); lists never do."""

    async def prompt(self, tenant_id: str, prompt_id: str) -> Prompt | None: ...

    async def prompts(self, tenant_id: str, flt: ListFilter) -> tuple[list[Prompt], str | None]: ...

    async def prompt_version(self, tenant_id: str, prompt_id: str, number: int) -> PromptVersion | None: ...

    async def prompt_versions(
        self, tenant_id: str, prompt_id: str, limit: int, cursor: str | None
    ) -> tuple[list[PromptVersion], str | None]:
        """Versions in ascending order of their number, after `cursor`."""
        ...


@dataclass(frozen=True)
class PromptPorts:
    views: PromptViews
    recorder: EventRecorder
    new_id: Callable[[str], str] = new_id
