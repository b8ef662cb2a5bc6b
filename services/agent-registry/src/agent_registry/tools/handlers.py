"""Use cases of tools: command handlers and queries.

Names are unique per tenant (case-insensitively) among tools that are not deleted. Uniqueness is
an insert-only claim document per (tenant, name) taken *before* the event is recorded: two
concurrent creates of one name both try to insert it and exactly one succeeds (no read-then-write
check). A claim is released when its tool is deleted or renamed, or when recording fails. A claim
left behind by a crash (its tool deleted, renamed, or never recorded) is stale once it is older
than `CLAIM_LEASE` and is then taken over.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from pydantic import BaseModel

from ..application.recording import record_and_fold
from . import domain
from .domain import CreateTool, DeleteTool, Tool, ToolNameTaken, UpdateTool, name_key
from .ports import NameClaim, ToolFilter, ToolPorts

CLAIM_LEASE = timedelta(seconds=60)  # a create or rename finishes well within this


async def _record(
    ports: ToolPorts, tool: Tool | None, tenant_id: str, tool_id: str, events: Sequence[BaseModel]
) -> Tool:
    return await record_and_fold(
        ports.recorder,
        domain.evolve_tool,
        tool,
        tenant_id=tenant_id,
        stream_id=domain.tool_stream(tenant_id, tool_id),
        expected_version=tool.version if tool else 0,
        events=events,
    )


async def _is_stale(ports: ToolPorts, tenant_id: str, held: NameClaim) -> bool:
    """Whether a claim no longer protects a live tool's name."""
    owner = await ports.views.tool(tenant_id, held.tool_id)
    if owner is not None and owner.deleted:
        return True  # deletion is final
    if ports.clock() - held.claimed_at < CLAIM_LEASE:
        return False  # a create or rename may still be recording
    if owner is None:
        return await ports.stream_version(domain.tool_stream(tenant_id, held.tool_id)) == 0
    return name_key(owner.name) != held.name_key


async def _claim(ports: ToolPorts, tenant_id: str, name: str, tool_id: str) -> NameClaim:
    mine = NameClaim(name_key(name), tool_id, uuid.uuid4().hex, ports.clock())
    for _ in range(5):
        held = await ports.claims.insert(tenant_id, mine)
        if held is None:
            return mine
        if held.tool_id == tool_id:
            return held  # left over from an earlier attempt of this very tool
        if not await _is_stale(ports, tenant_id, held):
            raise ToolNameTaken(name, held.tool_id)
        await ports.claims.release(tenant_id, held.name_key, held.tool_id, held.claim_id)
    raise ToolNameTaken(name, held.tool_id)


async def create_tool(cmd: CreateTool, ports: ToolPorts) -> Tool:
    event = domain.decide_create_tool(ports.new_id("tol"), cmd)
    claim = await _claim(ports, cmd.tenant_id, event.name, event.tool_id)
    try:
        return await _record(ports, None, cmd.tenant_id, event.tool_id, [event])
    except BaseException:
        await ports.claims.release(cmd.tenant_id, claim.name_key, claim.tool_id, claim.claim_id)
        raise


async def update_tool(cmd: UpdateTool, ports: ToolPorts) -> Tool:
    """A rename claims the new name first and frees the old one after recording."""
    tool = await ports.views.tool(cmd.tenant_id, cmd.tool_id)
    event = domain.decide_update_tool(tool, cmd)
    assert tool is not None
    if event is None:
        return tool
    renamed = name_key(event.name) != name_key(tool.name)
    claim = await _claim(ports, cmd.tenant_id, event.name, tool.id) if renamed else None
    try:
        updated = await _record(ports, tool, cmd.tenant_id, tool.id, [event])
    except BaseException:
        if claim is not None:
            await ports.claims.release(cmd.tenant_id, claim.name_key, claim.tool_id, claim.claim_id)
        raise
    if renamed:
        await ports.claims.release(cmd.tenant_id, name_key(tool.name), tool.id)
    return updated


async def delete_tool(cmd: DeleteTool, ports: ToolPorts) -> Tool:
    tool = await ports.views.tool(cmd.tenant_id, cmd.tool_id)
    event = domain.decide_delete_tool(tool, cmd)
    assert tool is not None
    deleted = await _record(ports, tool, cmd.tenant_id, tool.id, [event])
    await ports.claims.release(cmd.tenant_id, name_key(tool.name), tool.id)
    return deleted


async def get_tool(ports: ToolPorts, tenant_id: str, tool_id: str) -> Tool:
    return domain.require_live(await ports.views.tool(tenant_id, tool_id), tool_id)


async def list_tools(ports: ToolPorts, tenant_id: str, flt: ToolFilter) -> tuple[list[Tool], str | None]:
    return await ports.views.tools(tenant_id, flt)
