"""In-memory fakes of the tool ports for unit tests of the use cases (no I/O)."""

from __future__ import annotations

from pydantic import BaseModel

from ailab_contracts import EventEnvelope
from ailab_runtime.pagination import decode_cursor, encode_cursor

from ..adapters.memory import InMemoryEventStore
from ..domain.model import EventMeta
from .domain import Tool, evolve_tool
from .ports import NameClaim, ToolFilter


class InMemoryTools(InMemoryEventStore):
    """Recorder, `tools` view and event-store probe in one."""

    def __init__(self) -> None:
        super().__init__()
        self._tools: dict[tuple[str, str], Tool] = {}

    def _apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        key = (envelope.tenant_id, event.tool_id)
        new = evolve_tool(self._tools.get(key), envelope.tenant_id, event, EventMeta.of(envelope))
        if new is not None:
            self._tools[key] = new

    async def stream_version(self, stream_id: str) -> int:
        return len(self.streams.get(stream_id, []))

    async def tool(self, tenant_id: str, tool_id: str) -> Tool | None:
        return self._tools.get((tenant_id, tool_id))

    async def tools(self, tenant_id: str, flt: ToolFilter) -> tuple[list[Tool], str | None]:
        after = decode_cursor(flt.cursor)
        items = [
            t
            for (tenant, key), t in sorted(self._tools.items())
            if tenant == tenant_id
            and (after is None or key > after)
            and (t.status == flt.status if flt.status else not t.deleted)
            and (not flt.tag or flt.tag in t.tags)
            and (not flt.kind or t.kind == flt.kind)
        ]
        page = items[: flt.limit]
        return page, encode_cursor(page[-1].id) if len(items) > flt.limit else None


class InMemoryNameClaims:
    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], NameClaim] = {}

    async def insert(self, tenant_id: str, claim: NameClaim) -> NameClaim | None:
        held = self.claims.setdefault((tenant_id, claim.name_key), claim)
        return None if held is claim else held

    async def release(self, tenant_id: str, name_key: str, tool_id: str, claim_id: str | None = None) -> None:
        held = self.claims.get((tenant_id, name_key))
        if held and held.tool_id == tool_id and claim_id in (None, held.claim_id):
            del self.claims[(tenant_id, name_key)]
