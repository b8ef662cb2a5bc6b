"""In-memory fakes of the prompt ports for unit tests of the use cases (no I/O): a recorder with
the event store's optimistic concurrency whose views fold events with the domain's functions."""

from __future__ import annotations

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_runtime.pagination import decode_cursor, encode_cursor

from ..adapters.memory import InMemoryEventStore
from ..application.ports import ListFilter
from ..domain.model import EventMeta
from .domain import Prompt, PromptVersion, evolve_prompt, evolve_prompt_version


class InMemoryPrompts(InMemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self._prompts: dict[tuple[str, str], Prompt] = {}
        self._versions: dict[tuple[str, str, int], PromptVersion] = {}

    def _apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        tenant, meta = envelope.tenant_id, EventMeta.of(envelope)
        prompt_id = event.prompt_id
        if (prompt := evolve_prompt(self._prompts.get((tenant, prompt_id)), tenant, event, meta)) is not None:
            self._prompts[(tenant, prompt_id)] = prompt
        for key, version in list(self._versions.items()):
            if key[:2] == (tenant, prompt_id) and (
                new := evolve_prompt_version(version, tenant, event, meta)
            ):
                self._versions[key] = new
        if (created := evolve_prompt_version(None, tenant, event, meta)) is not None:
            self._versions.setdefault((tenant, prompt_id, created.number), created)

    async def prompt(self, tenant_id: str, prompt_id: str) -> Prompt | None:
        return self._prompts.get((tenant_id, prompt_id))

    async def prompts(self, tenant_id: str, flt: ListFilter) -> tuple[list[Prompt], str | None]:
        after = decode_cursor(flt.cursor)
        items = sorted(
            (p for (t, k), p in self._prompts.items() if t == tenant_id and (after is None or k > after)),
            key=lambda p: p.id,
        )
        items = [
            p
            for p in items
            if (p.status == flt.status if flt.status else not p.deleted)
            and (not flt.tag or flt.tag in p.tags)
        ]
        page = items[: flt.limit]
        return page, encode_cursor(page[-1].id) if len(items) > flt.limit else None

    async def prompt_version(self, tenant_id: str, prompt_id: str, number: int) -> PromptVersion | None:
        return self._versions.get((tenant_id, prompt_id, number))

    async def prompt_versions(
        self, tenant_id: str, prompt_id: str, limit: int, cursor: str | None
    ) -> tuple[list[PromptVersion], str | None]:
        after = int(decode_cursor(cursor) or 0)
        items = sorted(
            (v for (t, p, n), v in self._versions.items() if (t, p) == (tenant_id, prompt_id) and n > after),
            key=lambda v: v.number,
        )
        page = items[:limit]
        return page, encode_cursor(str(page[-1].number)) if len(items) > limit else None
