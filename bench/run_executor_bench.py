"""Benchmark of the run executor (issue 4): overhead per run over the raw provider call, and
sustained runs/s at 50 concurrent runs. Writes bench/results/run_executor.json.

1. raw: the `local` provider's streamed call alone, in-process (the provider work every run does).
2. engine: the same two-node flow through the flow engine in-process (graph walk, templates, spans,
   metering objects) with no I/O: the executor's own CPU overhead per run.
3. service: the whole system running on real Kafka + MongoDB-wire; a run started over HTTP on the
   run-executor with `stream=true`, timed to its final event: everything a run costs (events,
   projections, logs, spans, usage records) — measured end to end.
4. throughput: 50 concurrent clients starting streamed runs for a fixed count (bounded loop,
   loopback only).
Run with `make bench` (starts the infrastructure if needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from cleanup import cleanup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from run_executor.engine.engine import (  # noqa: E402
    EngineDeps,
    FlowTarget,
    Limits,
    ProviderCall,
    RunScope,
    Span,
    execute_target,
)
from run_executor.engine.spans import new_trace_id  # noqa: E402
from run_executor.providers import LocalProviderConfig, ProviderRequest, build_registry  # noqa: E402
from run_executor.providers.secrets import StaticSecretResolver  # noqa: E402

FLOW = {
    "nodes": [
        {"id": "in", "type": "input"},
        {
            "id": "draft",
            "type": "llm",
            "config": {"provider": "local", "model": "local-echo", "prompt": "Say {{ inputs.message }}"},
        },
        {"id": "out", "type": "output", "config": {"value": {"answer": "{{ draft.text }}"}}},
    ],
    "edges": [{"source": "in", "target": "draft"}, {"source": "draft", "target": "out"}],
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "p50_ms": pct(values_ms, 0.50),
        "p95_ms": pct(values_ms, 0.95),
        "p99_ms": pct(values_ms, 0.99),
        "mean_ms": round(statistics.fmean(values_ms), 3),
    }


class NullObserver:
    async def log(
        self, level: str, message: str, *, node_id: str | None = None, data: Mapping[str, Any] | None = None
    ) -> None:
        return None

    async def span(self, span: Span) -> None:
        return None

    async def provider_call(self, call: ProviderCall) -> None:
        return None

    async def progress(self, event: str, data: Mapping[str, Any]) -> None:
        return None


class NoRegistry:
    async def prompt_version(self, tenant_id: str, prompt_id: str, ref: int | str | None) -> None:
        return None

    async def tool(self, tenant_id: str, name: str) -> None:
        return None


async def bench_in_process(iterations: int) -> dict[str, Any]:
    providers = build_registry([LocalProviderConfig()], secrets=StaticSecretResolver({}))
    request = ProviderRequest(
        provider="local",
        model="local-echo",
        messages=[{"role": "user", "content": "Say hello there"}],
        stream=True,
    )
    raw: list[float] = []
    for _ in range(iterations):
        started = time.perf_counter()
        async for _event in providers.stream(request):
            pass
        raw.append((time.perf_counter() - started) * 1000)
    deps = EngineDeps(providers=providers, registry=NoRegistry(), tools=None)  # type: ignore[arg-type]
    engine: list[float] = []
    for _ in range(iterations):
        scope = RunScope(tenant_id="bench", user_id="bench", run_id=uuid.uuid4().hex, trace_id=new_trace_id())
        started = time.perf_counter()
        result = await execute_target(
            FlowTarget(flow_graph=FLOW),
            {"message": "hello there"},
            scope=scope,
            deps=deps,
            observer=NullObserver(),
            limits=Limits(),
        )
        engine.append((time.perf_counter() - started) * 1000)
        assert result.status == "succeeded", result.error
    await providers.aclose()
    raw_s, engine_s = summary(raw[iterations // 10 :]), summary(engine[iterations // 10 :])  # drop warm-up
    return {
        "raw_provider_call": raw_s,
        "engine_run": engine_s,
        "engine_overhead_p50_ms": round(engine_s["p50_ms"] - raw_s["p50_ms"], 3),
        "engine_overhead_p95_ms": round(engine_s["p95_ms"] - raw_s["p95_ms"], 3),
    }


async def streamed_run(client: httpx.AsyncClient, path: str, agent_id: str) -> float:
    started = time.perf_counter()
    async with client.stream(
        "POST", path, json={"agent_id": agent_id, "inputs": {"message": "hello there"}, "stream": True}
    ) as reply:
        if reply.status_code != 201:
            raise RuntimeError(f"{reply.status_code}: {(await reply.aread())[:300]!r}")
        last = ""
        async for line in reply.aiter_lines():
            if line.startswith("event:"):
                last = line
        if "run.finished" not in last:
            raise RuntimeError(f"stream ended without run.finished ({last})")
    return (time.perf_counter() - started) * 1000


async def bench_service(raw_p50: float, runs: int, concurrency: int, total: int) -> dict[str, Any]:
    from scripts.system import SERVICES, start_all, stop_all
    from tests.e2e.helpers import client as gw_client
    from tests.e2e.helpers import new_tenant_with_admin

    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="ailab-bench-"))
    ports = {name: 18100 + i for i, name in enumerate(SERVICES)}
    base_env = {
        "ENVIRONMENT": "test",
        "TOPIC_PREFIX": f"bench{run_id}.",
        "INTERNAL_TOKEN": f"bench-{run_id}",
        "JWT_PRIVATE_KEY_PATH": str(tmp / "jwt.pem"),
        "PLATFORM_ADMIN_EMAIL": f"admin-{run_id}@bench.local",
        "PLATFORM_ADMIN_PASSWORD": "bench-admin-pw",
        "LOG_LEVEL": "WARNING",
        "KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "MONGODB_URI": os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"),
    }
    print(f"[bench] starting the system (logs in {tmp / 'logs'})...", flush=True)
    system = start_all(ports, base_env, tmp / "logs", database_prefix=f"bench{run_id}_")
    try:
        gateway = system.gateway_url
        async with httpx.AsyncClient(timeout=30) as auth:
            login = {"email": base_env["PLATFORM_ADMIN_EMAIL"], "password": "bench-admin-pw"}
            token = (await auth.post(f"{gateway}/v1/auth/token", json=login)).json()["access_token"]
        tenant_id, _, owner_token = new_tenant_with_admin(
            gateway, gw_client(gateway, token), plan="enterprise"
        )
        owner = gw_client(gateway, owner_token)
        agent_id = owner.post(f"/v1/tenants/{tenant_id}/agents", json={"name": "bench"}).json()["id"]
        owner.post(f"/v1/tenants/{tenant_id}/agents/{agent_id}/versions", json={"flow_graph": FLOW})
        headers = {
            "X-Internal-Token": base_env["INTERNAL_TOKEN"],
            "X-Principal-Id": "usr_bench",
            "X-Principal-Role": "developer",
        }
        path = f"/v1/tenants/{tenant_id}/runs"
        limits = httpx.Limits(max_connections=concurrency + 10)
        async with httpx.AsyncClient(
            base_url=system.url("run-executor"), headers=headers, timeout=60, limits=limits
        ) as http:
            deadline = time.monotonic() + 60
            while True:  # the executor learns the agent and the plan from Kafka
                try:
                    await streamed_run(http, path, agent_id)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            print(f"[bench] sequential streamed runs: {runs}", flush=True)
            latencies = [await streamed_run(http, path, agent_id) for _ in range(runs)]
            print(f"[bench] {total} runs with {concurrency} concurrent clients", flush=True)
            remaining = total
            done: list[float] = []
            errors: list[str] = []

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    try:
                        done.append(await asyncio.wait_for(streamed_run(http, path, agent_id), 60))
                    except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
                        errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                    if (len(done) + len(errors)) % 25 == 0:
                        print(f"[bench]   {len(done)} done, {len(errors)} errors", flush=True)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
    finally:
        stop_all(system)
        await cleanup(
            base_env["MONGODB_URI"],
            f"bench{run_id}_",
            base_env["KAFKA_BOOTSTRAP_SERVERS"],
            base_env["TOPIC_PREFIX"],
        )
    service = summary(latencies)
    return {
        "service_run_latency": service,
        "service_overhead_p50_ms": round(service["p50_ms"] - raw_p50, 3),
        "service_overhead_p95_ms": round(service["p95_ms"] - raw_p50, 3),
        "throughput": {
            "concurrency": concurrency,
            "runs": len(done),
            "errors": len(errors),
            "first_errors": errors[:5],
            "seconds": round(elapsed, 2),
            "runs_per_s": round(len(done) / elapsed, 1),
            "latency": summary(done) if done else None,
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=2000, help="in-process iterations")
    parser.add_argument("--runs", type=int, default=100, help="sequential runs through the service")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--total", type=int, default=500, help="runs in the throughput phase")
    parser.add_argument("--skip-service", action="store_true", help="in-process numbers only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "run_executor.json")
    args = parser.parse_args()
    print(f"[bench] in-process: {args.iterations} raw provider calls and engine runs", flush=True)
    result: dict[str, Any] = {
        "benchmark": "run-executor",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    result["in_process"] = await bench_in_process(args.iterations)
    if not args.skip_service:
        result.update(
            await bench_service(
                result["in_process"]["raw_provider_call"]["p50_ms"], args.runs, args.concurrency, args.total
            )
        )
    result["target"] = {
        "engine_overhead_p50_ms_below": 5.0,
        "met": result["in_process"]["engine_overhead_p50_ms"] < 5.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"[bench] written to {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
