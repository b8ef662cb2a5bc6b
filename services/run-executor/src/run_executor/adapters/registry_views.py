"""The executor's own views of registry and tenancy data, fed from Kafka (it never reads another
service's database).

Consumer `run-executor.registry-views` on `ailab.registry.events`:
- `registry_agents` (name, project, latest version, deleted), `registry_agent_versions` (flow graph,
  config, status), from the stream `agent:{tenant}:{agent_id}`;
- `registry_prompts`, `registry_prompt_versions`, `registry_prompt_labels` (label -> version), from
  `prompt:{tenant}:{prompt_id}`;
- `registry_tools` (the full definition), from `tool:{tenant}:{tool_id}`.
Consumer `run-executor.tenant-plans` on `ailab.tenancy.events`: `tenant_plans` (plan per tenant).

Every document keeps `_version`, the position in its source stream it reflects, and an update
applies only past it (`apply_versioned`), so redeliveries and replays are no-ops. The consumer is
the single writer (one consumer per partition; key = tenant id keeps a tenant's events in order).
An event naming a document of another tenant is dropped.

A run started right after an agent version (prompt, tool) was published can reach the executor
before the event does, so a lookup that finds nothing waits up to `wait_s` (`REGISTRY_VIEW_WAIT_S`)
for the view to catch up before answering None: woken whenever this process's consumer applies an
event, and polling with a short backoff for events applied by another instance of the service.
A lookup that waited in vain is remembered for a minute: asking again (an experiment's next example,
a client retrying) answers at once from the view instead of waiting each time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ailab_contracts import EventEnvelope
from ailab_contracts.events.prompts import (
    PromptCreated,
    PromptDeleted,
    PromptLabelMoved,
    PromptLabelRemoved,
    PromptUpdated,
    PromptVersionCreated,
)
from ailab_contracts.events.registry import (
    AgentCreated,
    AgentDeleted,
    AgentUpdated,
    AgentVersionPublished,
    AgentVersionUpdated,
)
from ailab_contracts.events.tenancy import TenantCreated, TenantUpdated
from ailab_contracts.events.tools import ToolCreated, ToolDeleted, ToolUpdated
from ailab_runtime.mongo_server import delete_matching
from ailab_runtime.views import apply_versioned

from ..application.ports import AgentRef, AgentVersionRef
from ..engine.engine import PromptVersion
from ..engine.tools import BUILTIN_NAMES, ToolSpec

T = TypeVar("T")

log = logging.getLogger(__name__)

Db = AsyncDatabase[dict[str, Any]]

AGENTS = "registry_agents"
AGENT_VERSIONS = "registry_agent_versions"
PROMPTS = "registry_prompts"
PROMPT_VERSIONS = "registry_prompt_versions"
PROMPT_LABELS = "registry_prompt_labels"
TOOLS = "registry_tools"
TENANT_PLANS = "tenant_plans"
VIEWS = (AGENTS, AGENT_VERSIONS, PROMPTS, PROMPT_VERSIONS, PROMPT_LABELS, TOOLS, TENANT_PLANS)

REGISTRY_EVENT_TYPES = {
    "registry.AgentCreated",
    "registry.AgentUpdated",
    "registry.AgentDeleted",
    "registry.AgentVersionPublished",
    "registry.AgentVersionUpdated",
    "registry.PromptCreated",
    "registry.PromptUpdated",
    "registry.PromptDeleted",
    "registry.PromptVersionCreated",
    "registry.PromptLabelMoved",
    "registry.PromptLabelRemoved",
    "registry.ToolCreated",
    "registry.ToolUpdated",
    "registry.ToolDeleted",
}
TENANCY_EVENT_TYPES = {"tenancy.TenantCreated", "tenancy.TenantUpdated"}


def version_key(entity_id: str, version: int) -> str:
    return f"{entity_id}:{version:010d}"


async def ensure_indexes(db: Db) -> None:
    await db[AGENTS].create_index([("tenant_id", ASCENDING), ("_id", ASCENDING)], name="tenant_id")
    await db[AGENT_VERSIONS].create_index(
        [("tenant_id", ASCENDING), ("agent_id", ASCENDING), ("version", ASCENDING)], name="tenant_agent"
    )
    await db[PROMPT_VERSIONS].create_index(
        [("tenant_id", ASCENDING), ("prompt_id", ASCENDING), ("version", ASCENDING)], name="tenant_prompt"
    )
    await db[TOOLS].create_index(
        [("tenant_id", ASCENDING), ("name", ASCENDING), ("deleted", ASCENDING)], name="name"
    )


class ViewChanges:
    """Wakes the lookups waiting for a view to catch up each time an event was applied."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """Taken before a lookup reads, so a change applied meanwhile still wakes the waiter."""
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


class RegistryViews:
    """Consumer handler (registry and tenancy events) and the lookups the API and engine use."""

    POLL_FIRST_S = 0.05
    POLL_MAX_S = 0.5
    MISSING_MEMORY_S = 60.0
    MISSING_MEMORY_MAX = 10_000

    def __init__(self, db: Db, wait_s: float = 0.0) -> None:
        self._db = db
        self._wait_s = wait_s
        self._changes = ViewChanges()
        self._missing: dict[tuple[Any, ...], float] = {}  # lookup -> until when it answers without waiting
        self._agents = db[AGENTS]
        self._versions = db[AGENT_VERSIONS]
        self._prompts = db[PROMPTS]
        self._prompt_versions = db[PROMPT_VERSIONS]
        self._labels = db[PROMPT_LABELS]
        self._tools = db[TOOLS]
        self._plans = db[TENANT_PLANS]

    # --- applying events -------------------------------------------------------------------------

    async def _owned(self, collection: str, doc_id: str, tenant_id: str) -> bool:
        """False when the document exists under another tenant (the event is dropped)."""
        doc = await self._db[collection].find_one({"_id": doc_id}, {"tenant_id": 1})
        if doc is None or doc["tenant_id"] == tenant_id:
            return True
        log.error(
            "registry event names a document of another tenant; dropped",
            extra={"fields": {"view": collection, "doc_id": doc_id}},
        )
        return False

    async def _set(
        self,
        collection: str,
        doc_id: str,
        envelope: EventEnvelope,
        fields: dict[str, Any],
        on_insert: dict[str, Any] | None = None,
    ) -> None:
        if not await self._owned(collection, doc_id, envelope.tenant_id):
            return
        await apply_versioned(
            self._db[collection],
            doc_id,
            envelope.stream_version,
            {"tenant_id": envelope.tenant_id, **fields},
            on_insert=on_insert,
        )

    async def apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        try:
            await self._apply(envelope, event)
        finally:
            self._changes.notify()

    async def _apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        tenant = envelope.tenant_id
        if isinstance(event, TenantCreated | TenantUpdated):
            if event.tenant_id != tenant:
                log.error("tenancy event about another tenant than its envelope; ignored")
                return
            if event.plan is not None:
                await self._set(TENANT_PLANS, tenant, envelope, {"plan": event.plan})
            return
        if isinstance(event, AgentCreated):
            await self._set(
                AGENTS,
                event.agent_id,
                envelope,
                {"name": event.name, "project_id": event.project_id, "status": "active", "deleted": False},
                on_insert={"latest_version": None},
            )
        elif isinstance(event, AgentUpdated):
            changes = {
                k: getattr(event, k)
                for k in ("name", "project_id", "status")
                if getattr(event, k) is not None
            }
            await self._set(AGENTS, event.agent_id, envelope, changes)
        elif isinstance(event, AgentDeleted):
            await self._set(AGENTS, event.agent_id, envelope, {"deleted": True})
        elif isinstance(event, AgentVersionPublished):
            await self._set(
                AGENT_VERSIONS,
                version_key(event.agent_id, event.version),
                envelope,
                {
                    "agent_id": event.agent_id,
                    "version": event.version,
                    "flow_graph": event.flow_graph.model_dump(mode="json"),
                    "config": dict(event.config),
                    "status": "active",
                },
            )
            await self._set(AGENTS, event.agent_id, envelope, {"latest_version": event.version})
        elif isinstance(event, AgentVersionUpdated):
            if event.status is not None:
                await self._set(
                    AGENT_VERSIONS,
                    version_key(event.agent_id, event.version),
                    envelope,
                    {"status": event.status},
                )
        elif isinstance(event, PromptCreated):
            await self._set(
                PROMPTS,
                event.prompt_id,
                envelope,
                {"name": event.name, "deleted": False},
                {"latest_version": None},
            )
        elif isinstance(event, PromptUpdated):
            if event.name is not None:
                await self._set(PROMPTS, event.prompt_id, envelope, {"name": event.name})
        elif isinstance(event, PromptDeleted):
            await self._set(PROMPTS, event.prompt_id, envelope, {"deleted": True})
        elif isinstance(event, PromptVersionCreated):
            await self._set(
                PROMPT_VERSIONS,
                version_key(event.prompt_id, event.version),
                envelope,
                {
                    "prompt_id": event.prompt_id,
                    "version": event.version,
                    "template": event.template,
                    "messages": [m.model_dump(mode="json") for m in event.messages]
                    if event.messages
                    else None,
                    "variables": [v.model_dump(mode="json") for v in event.variables],
                    "model_params": dict(event.model_params),
                },
            )
            await self._set(PROMPTS, event.prompt_id, envelope, {"latest_version": event.version})
        elif isinstance(event, PromptLabelMoved):
            await self._set(
                PROMPT_LABELS,
                f"{event.prompt_id}:{event.label}",
                envelope,
                {"prompt_id": event.prompt_id, "label": event.label, "version": event.version},
            )
        elif isinstance(event, PromptLabelRemoved):
            await self._set(
                PROMPT_LABELS,
                f"{event.prompt_id}:{event.label}",
                envelope,
                {"prompt_id": event.prompt_id, "label": event.label, "version": None},
            )
        elif isinstance(event, ToolCreated | ToolUpdated):
            definition = event.model_dump(
                mode="json", exclude={"tool_id", "created_by", "updated_by", "changed"}
            )
            await self._set(
                TOOLS,
                event.tool_id,
                envelope,
                {
                    "name": event.name,
                    "status": event.status,
                    "deleted": False,
                    # the definition as JSON text: header names and schema keys may hold `.` or `$`
                    "definition": json.dumps(definition, sort_keys=True),
                },
            )
        elif isinstance(event, ToolDeleted):
            await self._set(TOOLS, event.tool_id, envelope, {"deleted": True})

    async def reset(self) -> None:
        for name in VIEWS:
            await delete_matching(self._db[name], {})

    # --- lookups -----------------------------------------------------------------------------------

    async def _awaiting(
        self, key: tuple[Any, ...], probe: Callable[[], Awaitable[T | None]], wait: bool = True
    ) -> T | None:
        """`probe()` until it finds something or `wait_s` passed (then None)."""
        loop = asyncio.get_running_loop()
        if wait and self._missing.get(key, 0.0) > loop.time():
            wait = False  # it was waited for in vain a moment ago
        deadline = loop.time() + (self._wait_s if wait else 0.0)
        pause = self.POLL_FIRST_S
        while True:
            changed = self._changes.current()
            found = await probe()
            remaining = deadline - loop.time()
            if found is not None:
                self._missing.pop(key, None)
                return found
            if remaining <= 0:
                if wait and self._wait_s > 0:
                    if len(self._missing) >= self.MISSING_MEMORY_MAX:
                        self._missing.clear()
                    self._missing[key] = loop.time() + self.MISSING_MEMORY_S
                return None
            try:
                await asyncio.wait_for(changed.wait(), min(pause, remaining))
            except TimeoutError:
                pause = min(pause * 2, self.POLL_MAX_S)

    async def plan(self, tenant_id: str) -> str | None:
        doc = await self._plans.find_one({"_id": tenant_id}, {"plan": 1})
        plan = doc.get("plan") if doc else None
        return plan if isinstance(plan, str) else None

    async def agent(self, tenant_id: str, agent_id: str) -> AgentRef | None:
        """Waits while the agent is unknown or has no published version yet (nothing to run)."""

        async def probe() -> dict[str, Any] | None:
            doc = await self._agents.find_one({"_id": agent_id, "tenant_id": tenant_id})
            if doc is None or (doc.get("latest_version") is None and not doc.get("deleted")):
                return None
            return doc

        doc = await self._awaiting(("agent", tenant_id, agent_id), probe)
        if doc is None:  # after the wait: the agent as it is, if at all
            doc = await self._agents.find_one({"_id": agent_id, "tenant_id": tenant_id})
        if doc is None:
            return None
        return AgentRef(
            agent_id=agent_id,
            tenant_id=tenant_id,
            project_id=doc.get("project_id"),
            latest_version=doc.get("latest_version"),
            deleted=bool(doc.get("deleted")),
        )

    async def version(self, tenant_id: str, agent_id: str, version: int) -> AgentVersionRef | None:
        async def probe() -> dict[str, Any] | None:
            doc = await self._versions.find_one(
                {"_id": version_key(agent_id, version), "tenant_id": tenant_id}
            )
            return doc if doc is not None and "flow_graph" in doc else None

        doc = await self._awaiting(("version", tenant_id, agent_id, version), probe)
        if doc is None:
            return None
        return AgentVersionRef(
            agent_id=agent_id,
            version=version,
            flow_graph=doc["flow_graph"],
            config=doc.get("config") or {},
            status=doc.get("status") or "active",
        )

    async def prompt_version(
        self, tenant_id: str, prompt_id: str, ref: int | str | None
    ) -> PromptVersion | None:
        return await self._awaiting(
            ("prompt", tenant_id, prompt_id, ref), lambda: self._prompt_version(tenant_id, prompt_id, ref)
        )

    async def _prompt_version(
        self, tenant_id: str, prompt_id: str, ref: int | str | None
    ) -> PromptVersion | None:
        prompt = await self._prompts.find_one({"_id": prompt_id, "tenant_id": tenant_id})
        if prompt is None or prompt.get("deleted"):
            return None
        if ref is None or ref == "latest":
            number = prompt.get("latest_version")
        elif isinstance(ref, int):
            number = ref
        else:
            label = await self._labels.find_one({"_id": f"{prompt_id}:{ref}", "tenant_id": tenant_id})
            number = label.get("version") if label else None
        if not isinstance(number, int):
            return None
        doc = await self._prompt_versions.find_one(
            {"_id": version_key(prompt_id, number), "tenant_id": tenant_id}
        )
        if doc is None or "version" not in doc:
            return None
        return PromptVersion(
            prompt_id=prompt_id,
            version=number,
            template=doc.get("template"),
            messages=doc.get("messages"),
            variables=doc.get("variables") or [],
            model_params=doc.get("model_params") or {},
        )

    async def tool(self, tenant_id: str, name: str) -> ToolSpec | None:
        """A built-in name falls back to the built-in at once when no tenant tool has it (no wait)."""
        return await self._awaiting(
            ("tool", tenant_id, name), lambda: self._tool(tenant_id, name), wait=name not in BUILTIN_NAMES
        )

    async def _tool(self, tenant_id: str, name: str) -> ToolSpec | None:
        doc = await self._tools.find_one(
            {"tenant_id": tenant_id, "name": name, "deleted": False}, sort=[("_id", DESCENDING)]
        )
        if doc is None or not doc.get("definition"):
            return None
        definition = json.loads(doc["definition"])
        return ToolSpec(
            name=definition["name"],
            kind=definition["kind"],
            parameters=definition.get("parameters") or {"type": "object", "properties": {}},
            description=definition.get("description"),
            tool_id=doc["_id"],
            method=definition.get("method"),
            url_template=definition.get("url_template"),
            headers=definition.get("headers") or {},
            builtin=definition.get("builtin"),
            timeout_ms=int(definition.get("timeout_ms") or 10_000),
            allowed_hosts=tuple(definition.get("allowed_hosts") or ()),
            status=definition.get("status") or "active",
        )
