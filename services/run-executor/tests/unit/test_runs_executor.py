"""The run lifecycle with in-memory ports: the executor task is the single writer of the run stream,
so a cancellation arriving while it writes loses neither write; queued runs wait for a slot;
orphans of dead executors are failed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from ailab_contracts.events.runs import RunQueued, RunStarted, RunTotals
from run_executor.application.executor import ExecutorPorts, RunExecutor
from run_executor.application.handlers import RunPorts, StartRun, cancel_run, start_run
from run_executor.application.ports import AgentRef, AgentVersionRef, RunFilter, StreamConflict
from run_executor.application.progress import ProgressHub
from run_executor.application.scheduler import TenantScheduler
from run_executor.domain.model import ACTIVE, Run, fold
from run_executor.engine.engine import EngineDeps
from run_executor.engine.spans import Span
from run_executor.engine.tools import ToolRunner
from run_executor.providers import LocalProvider, ProviderRegistry

pytestmark = pytest.mark.unit

SLOW = {
    "nodes": [
        {"id": "l", "type": "llm", "config": {"prompt": "a b c", "metadata": {"local_chunk_delay_s": 5}}}
    ]
}
FAST = {"nodes": [{"id": "t", "type": "transform", "config": {"template": "done {{ x }}"}}]}


class Store:
    """Recorder + run views + the other ports, in memory."""

    def __init__(self) -> None:
        self.streams: dict[str, list[BaseModel]] = defaultdict(list)
        self.tenants: dict[str, str] = {}
        self.gate: dict[str, asyncio.Event] = {}  # event type -> released when set
        self.conflicts = 0
        self.logs: list[dict[str, Any]] = []
        self.spans: list[Span] = []
        self.claims: dict[str, str] = {}
        self.heartbeats: dict[str, datetime] = {}
        self.agents: dict[str, dict[str, Any]] = {}

    async def record(
        self, stream_id: str, expected_version: int, tenant_id: str, events: Sequence[BaseModel]
    ) -> int:
        for event in events:
            gate = self.gate.get(type(event).__name__)
            if gate is not None:
                await gate.wait()
        stream = self.streams[stream_id]
        if len(stream) != expected_version:
            self.conflicts += 1
            raise StreamConflict(stream_id)
        stream.extend(events)
        self.tenants[stream_id] = tenant_id
        return len(stream)

    def run(self, run_id: str) -> Run | None:
        for stream_id, events in self.streams.items():
            if stream_id.startswith("run:") and stream_id.endswith(f":{run_id}"):
                return fold(None, self.tenants[stream_id], 1, list(events))
        return None

    # RunViews
    async def get(self, tenant_id: str, run_id: str) -> Run | None:
        run = self.run(run_id)
        return run if run is not None and run.tenant_id == tenant_id else None

    async def list(self, tenant_id: str, flt: RunFilter) -> tuple[list[Run], str | None]:
        return [], None

    async def active(self, limit: int = 1000) -> list[Run]:
        runs = [self.run(s.rsplit(":", 1)[1]) for s in self.streams if s.startswith("run:")]
        return [r for r in runs if r is not None and r.status in ACTIVE]

    # logs and spans
    async def append(self, entry: dict[str, Any]) -> None:
        self.logs.append(entry)

    async def insert(self, tenant_id: str, run_id: str, span: Span) -> None:
        self.spans.append(span)

    async def flush(self) -> None:
        return None  # written at once

    async def delete_run(self, tenant_id: str, run_id: str) -> None:
        return None

    # leases
    async def claim(self, run_id: str, tenant_id: str, instance_id: str) -> None:
        self.claims[run_id] = instance_id

    async def owner(self, run_id: str) -> str | None:
        return self.claims.get(run_id)

    async def heartbeat(self, instance_id: str, at: datetime) -> None:
        self.heartbeats[instance_id] = at

    async def alive(self, instance_id: str, since: datetime) -> bool:
        return instance_id in self.heartbeats and self.heartbeats[instance_id] >= since

    async def retire(self, instance_id: str) -> None:
        self.heartbeats.pop(instance_id, None)

    async def totals(self, tenant_id: str, run_id: str) -> RunTotals:
        return RunTotals()

    async def plan(self, tenant_id: str) -> str | None:
        return None

    # agents
    async def agent(self, tenant_id: str, agent_id: str) -> AgentRef | None:
        return AgentRef(agent_id, tenant_id, None, 1, False) if agent_id in self.agents else None

    async def version(self, tenant_id: str, agent_id: str, version: int) -> AgentVersionRef | None:
        return AgentVersionRef(agent_id, 1, self.agents[agent_id], {}, "active")

    # registry lookups for the engine
    async def prompt_version(self, tenant_id: str, prompt_id: str, ref: object) -> None:
        return None

    async def tool(self, tenant_id: str, name: str) -> None:
        return None


def build(store: Store) -> RunPorts:
    executor = RunExecutor(
        ExecutorPorts(
            recorder=store,
            runs=store,
            logs=store,  # type: ignore[arg-type]
            spans=store,  # type: ignore[arg-type]
            leases=store,
            metered=store,
            plans=store,
        ),
        EngineDeps(providers=ProviderRegistry([LocalProvider()]), registry=store, tools=ToolRunner(store)),  # type: ignore[arg-type]
        TenantScheduler(),
        ProgressHub(),
    )
    return RunPorts(views=store, agents=store, recorder=store, executor=executor, logs=store, spans=store)  # type: ignore[arg-type]


def command(agent_id: str, **kw: Any) -> StartRun:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "actor": "usr_1",
        "agent_id": agent_id,
        "version": None,
        "inputs": {"x": 1},
        "metadata": {},
        "timeout_s": None,
        "streamed": False,
        "request_id": "req_1",
    }
    fields.update(kw)
    return StartRun(**fields)


def types(store: Store, run_id: str) -> list[str]:
    return [type(e).__name__ for e in store.streams[f"run:acme:{run_id}"]]


async def finished(store: Store, run_id: str) -> Run:
    for _ in range(200):
        run = store.run(run_id)
        if run is not None and run.finished:
            return run
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never finished: {types(store, run_id)}")


async def test_a_run_goes_queued_running_succeeded() -> None:
    store = Store()
    store.agents["agt"] = FAST
    ports = build(store)
    run = await start_run(command("agt"), ports)
    assert run.status == "queued"
    done = await finished(store, run.id)
    assert done.status == "succeeded" and done.output == "done 1"
    assert types(store, run.id) == ["RunQueued", "RunStarted", "RunSucceeded"]
    assert [s.operation_name for s in store.spans] == ["node.transform", "agent.run"]
    compute = store.streams[f"usage:acme:{run.id}:compute"]
    assert [e.meter for e in compute] == ["compute_seconds"]  # type: ignore[attr-defined]


async def test_cancel_arriving_while_the_task_writes_loses_neither_write() -> None:
    store = Store()
    store.agents["agt"] = SLOW
    ports = build(store)
    gate = store.gate["RunStarted"] = asyncio.Event()  # hold the task inside its RunStarted write
    run = await start_run(command("agt"), ports)
    await asyncio.sleep(0.05)
    cancelling = asyncio.create_task(cancel_run("acme", run.id, "usr_2", "stop", None, ports))
    await asyncio.sleep(0.05)
    assert not cancelling.done()  # the API waits for the task, it does not write itself
    gate.set()
    result = await asyncio.wait_for(cancelling, 5)
    assert result.status == "cancelled" and result.cancelled_by == "usr_2"
    assert types(store, run.id) == ["RunQueued", "RunStarted", "RunCancelled"]
    assert store.conflicts == 0


async def test_cancelling_a_queued_run_records_only_its_cancellation() -> None:
    store = Store()
    store.agents["agt"] = SLOW
    ports = build(store)
    runs = [await start_run(command("agt"), ports) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert store.run(runs[2].id).status == "queued"  # type: ignore[union-attr]
    cancelled = await cancel_run("acme", runs[2].id, "usr_1", None, None, ports)
    assert cancelled.status == "cancelled" and types(store, runs[2].id) == ["RunQueued", "RunCancelled"]
    for run in runs[:2]:
        assert (await cancel_run("acme", run.id, "usr_1", None, None, ports)).status == "cancelled"
    assert store.conflicts == 0


async def test_orphans_of_a_dead_executor_are_failed_and_a_live_ones_are_kept() -> None:
    store = Store()
    ports = build(store)
    now = datetime.now(UTC)
    for run_id, owner in (("run_dead", "exe_dead"), ("run_kept", "exe_alive")):
        queued = RunQueued(
            run_id=run_id,
            agent_id="agt",
            agent_version=1,
            timeout_s=60,
            max_steps=10,
            trace_id="c" * 32,
            created_by="usr_1",
            queued_at=now - timedelta(minutes=1),
        )
        await store.record(
            f"run:acme:{run_id}", 0, "acme", [queued, RunStarted(run_id=run_id, started_at=now)]
        )
        store.claims[run_id] = owner
    store.heartbeats["exe_alive"] = now
    assert await ports.executor.sweep_orphans() == 1
    dead = store.run("run_dead")
    assert dead is not None and dead.status == "failed" and dead.error["code"] == "executor_restarted"  # type: ignore[index]
    assert types(store, "run_dead") == ["RunQueued", "RunStarted", "RunFailed"]
    assert store.run("run_kept").status == "running"  # type: ignore[union-attr]
    assert await ports.executor.sweep_orphans() == 0  # nothing left to do
