"""Benchmark of the usage-meter (issue 5): sustained events/s from the bulk API to the aggregates,
and event-to-aggregate lag, on this machine's real Kafka + MongoDB-wire stack.

The usage-meter runs as its own processes (`python -m usage_meter serve`: an API-only one and
`--consumers` aggregating ones; a fresh database and topic prefix). Phase 1: `--clients` concurrent
HTTP clients post `--batch`-event bulk requests (bodies serialized beforehand) until `--events`
events are accepted; the clock stops when the consumers have applied every one of them to the ledger
and aggregates (their ingest-stats counters). Phase 2: a steady `--lag-rate` for `--lag-events`
(default: the target, 20,000 events/s, for 30 s).
Lag = time the aggregate write finished minus the Kafka record's timestamp (set when the bulk API
produced it), per event, p50/p99. Finally the monthly totals read through the API are compared with
the sums of what was sent. `--runs` runs (5; fresh everything each time); the median one is
reported. `--warmup-events` (20,000) go through the whole path before the clock starts. Each run
records `cpu_probe_ms_before`, the time of a fixed pure-Python loop just before it (the machine's
speed at the time; lower is faster). `--cpu-cap CORES` runs all of it (the infrastructure and
services of `make up` too) with only CORES of the CPUs' time: a slower machine on demand.
Needs KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI (e.g. `source .data/infra.env`).
Writes bench/results/usage_meter.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from cleanup import cleanup
from cpu_cap import CpuCap, CpuCapError, release_leftover, stack_pids

from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.tenancy import TenantCreated, TenantLimits
from ailab_contracts.topics import TENANCY
from ailab_runtime.kafka import encode, new_producer

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "dev-internal-token-change-me"
METERS = ("tokens_in", "tokens_out", "requests")
# The consumer processes' ingest-stats counters the results keep (summed over the processes).
CONSUMER_COUNTERS = (
    "batches",
    "applied",
    "duplicates",
    "aggregate_writes",
    "quota_evaluations",
    "quota_checks",
)
MODELS = ("gpt-4o", "gpt-4.1-mini", "claude-3.5-sonnet", "llama-3.1-8b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_batch(tenant: str, size: int, rng: random.Random, sent: dict[str, Decimal]) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    events = []
    for _ in range(size):
        meter = rng.choice(METERS)
        quantity = Decimal(rng.randint(1, 4000)) if meter != "requests" else Decimal(1)
        sent[f"{tenant}|{meter}"] = sent.get(f"{tenant}|{meter}", Decimal(0)) + quantity
        events.append(
            {
                "event_id": uuid.uuid4().hex,
                "meter": meter,
                "quantity": str(quantity),
                "cost_usd_estimate": str(quantity / 1_000_000),
                "provider": "openai",
                "model": rng.choice(MODELS),
                "user_id": f"usr_{rng.randint(1, 50)}",
                "project_id": f"prj_{rng.randint(1, 5)}",
                "agent_id": f"agt_{rng.randint(1, 10)}",
                "timestamp": now,
            }
        )
    return events


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    database = f"bench_usage_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "MONGODB_DATABASE": database,
        "TOPIC_PREFIX": prefix,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "CONSUMER_MAX_EVENTS": str(args.consumer_events),
    }
    log = open(Path(tempfile.gettempdir()) / "usage_meter_bench_service.log", "wb")  # noqa: SIM115, ASYNC230
    procs = []
    consumer_ports = [port]
    if args.split:
        # As two deployments would run: an API-only one, and aggregating ones (replicas sharing the
        # topic's partitions in one consumer group).
        consumer_ports = [free_port() for _ in range(args.consumers)]
        api_env = {**env, "USAGE_CONSUMER_ENABLED": "false"}
        procs.append(spawn(api_env, log))
        for consumer_port in consumer_ports:
            procs.append(spawn({**env, "PORT": str(consumer_port)}, log))
    else:
        procs.append(spawn(env, log))
    headers = {"X-Internal-Token": TOKEN, "X-Principal-Id": "usr_bench", "X-Principal-Role": "platform_admin"}
    rng = random.Random(7)
    tenants = [f"ten_bench_{i}" for i in range(args.tenants)]
    sent: dict[str, Decimal] = {}
    request_ms: list[float] = []
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client,
            contextlib.AsyncExitStack() as clients,
        ):
            stats = [
                await clients.enter_async_context(
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", headers=headers, timeout=60)
                )
                for p in consumer_ports
            ]
            for probe in (client, *stats):
                await wait_ready(probe)
            await wait_assigned(stats, 90)
            if args.tenant_limits:  # every process once (in one process, `client` is `stats[0]`'s)
                await create_tenants(tenants, prefix, [client, *stats] if args.split else stats, 90)
            # Warm-up outside the measurement: topic metadata and the consumer group first, then
            # `--warmup-events` through the whole path (every tenant's documents exist, the processes'
            # code paths and the broker's JIT are warm): phase 1 measures the sustained rate, not
            # a cold start.
            await client.post(
                f"/v1/tenants/{tenants[0]}/usage/events",
                json={"events": make_batch(tenants[0], 10, rng, sent)},
            )
            warmed = 10
            for i in range(args.warmup_events // args.batch):
                tenant = tenants[i % len(tenants)]
                response = await client.post(
                    f"/v1/tenants/{tenant}/usage/events",
                    json={"events": make_batch(tenant, args.batch, rng, sent)},
                )
                assert response.status_code == 202, response.text[:500]
                warmed += args.batch
            await wait_applied(stats, warmed, 120)
            for each in stats:  # the backlog's lag is of phase 1's events only
                await each.get("/v1/admin/usage/ingest-stats", params={"reset_lag": "true", "lag": "false"})
            # Request bodies serialized before the clock starts: the load generator shares the machine.
            batches = [
                (
                    tenants[i % len(tenants)],
                    json.dumps(
                        {"events": make_batch(tenants[i % len(tenants)], args.batch, rng, sent)}
                    ).encode(),
                )
                for i in range(args.events // args.batch)
            ]
            total = warmed + len(batches) * args.batch
            queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
            for b in batches:
                queue.put_nowait(b)

            async def client_loop() -> None:
                poster = KeepAlivePoster(port, headers)
                # The answer starts with the accepted count (the API writes its keys in a fixed
                # order): checking that instead of parsing ~100 KB of per-event results keeps the
                # load generator's share of the two cores small. The totals are compared at the end.
                accepted = f'{{"accepted":{args.batch},"rejected":0,'.encode()
                try:
                    while not queue.empty():
                        tenant, body = queue.get_nowait()
                        started = time.perf_counter()
                        status, answer = await poster.post(f"/v1/tenants/{tenant}/usage/events", body)
                        request_ms.append((time.perf_counter() - started) * 1000)
                        assert status == 202 and answer.startswith(accepted), answer[:500]
                finally:
                    await poster.close()

            cpu_before = cpu_seconds(procs)
            started = time.perf_counter()
            await asyncio.gather(*(client_loop() for _ in range(args.clients)))
            api_s = time.perf_counter() - started
            applied = await wait_applied(stats, total, 600)
            e2e_s = time.perf_counter() - started
            cpu_used = {k: round(v - cpu_before.get(k, 0.0), 2) for k, v in cpu_seconds(procs).items()}
            # Phase 2: lag at a steady rate the consumer sustains (phase 1 measures a backlog draining).
            for each in stats:
                await each.get("/v1/admin/usage/ingest-stats", params={"reset_lag": "true"})
            paced = 0
            per_tick = max(1, args.lag_rate // 10)  # every 100 ms, in requests of at most args.batch
            sizes = [args.batch] * (per_tick // args.batch) + (
                [per_tick % args.batch] if per_tick % args.batch else []
            )
            # Every tick's bodies serialized before the clock, as in phase 1.
            ticks: list[list[tuple[str, bytes]]] = []
            while paced < args.lag_events:
                bodies = []
                for size in sizes:
                    tenant = tenants[(paced // args.batch) % len(tenants)]
                    body = json.dumps({"events": make_batch(tenant, size, rng, sent)}).encode()
                    bodies.append((tenant, body))
                    paced += size
                ticks.append(bodies)
            posters = [KeepAlivePoster(port, headers) for _ in sizes]
            cpu_before_steady = cpu_seconds(procs)  # after the bodies are built
            tick = paced_started = time.perf_counter()
            for bodies in ticks:
                answers = await asyncio.gather(
                    *(
                        poster.post(f"/v1/tenants/{tenant}/usage/events", body)
                        for poster, (tenant, body) in zip(posters, bodies, strict=True)
                    )
                )
                assert all(status == 202 for status, _ in answers), answers[0][1][:500]
                tick += 0.1
                await asyncio.sleep(max(0.0, tick - time.perf_counter()))
            for poster in posters:
                await poster.close()
            paced_s = time.perf_counter() - paced_started  # longer than planned if the API fell behind
            steady = await wait_applied(stats, total + paced, 300)
            cpu_steady = {
                k: round(v - cpu_before_steady.get(k, 0.0), 2) for k, v in cpu_seconds(procs).items()
            }
            month = datetime.now(UTC).strftime("%Y-%m")
            mismatches = 0
            for tenant in tenants:
                body = (
                    await client.get(
                        f"/v1/tenants/{tenant}/usage/monthly", params={"from": month, "to": month}
                    )
                ).json()
                meters = body["items"][0]["meters"] if body["items"] else {}
                for meter in METERS:
                    expected = sent.get(f"{tenant}|{meter}", Decimal(0))
                    got = Decimal(meters.get(meter, {}).get("quantity", "0"))
                    mismatches += expected != got
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        await cleanup(os.environ["MONGODB_URI"], database, os.environ["KAFKA_BOOTSTRAP_SERVERS"], prefix)
    request_ms.sort()
    events = len(batches) * args.batch
    return {
        "benchmark": "usage-meter",
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_1m_after": os.getloadavg()[0],
        },
        "params": vars(args),
        "events": events,
        "bulk_api": {
            "seconds": round(api_s, 2),
            "events_per_s": round(events / api_s),
            "request_p50_ms": round(request_ms[len(request_ms) // 2], 1),
            "request_p99_ms": round(request_ms[int(len(request_ms) * 0.99)], 1),
        },
        "to_aggregates": {"seconds": round(e2e_s, 2), "events_per_s": round(events / e2e_s)},
        "lag_ms_draining_backlog": applied["lag_ms"],
        "steady_rate": {
            "events_per_s": args.lag_rate,
            "achieved_events_per_s": round(paced / paced_s),
            "events": paced,
            "lag_ms": steady["lag_ms"],
            # What the consumer did in this phase alone: batch sizes and where their time went.
            "consumer": steady_consumer(applied, steady),
            "cpu_seconds": cpu_steady,
        },
        "consumer": {k: applied[k] for k in (*CONSUMER_COUNTERS, "stage_seconds")},
        "cpu_seconds_during_phase_1": cpu_used,
        "monthly_totals_mismatches": mismatches,
        "targets": {"events_per_s": 20000, "lag_p99_ms": 2000},
        "note": args.note,
    }


class KeepAlivePoster:
    """The load loop's HTTP/1.1 client: one keep-alive connection, each request written in one call
    and its answer read by Content-Length. httpx spent ~3 ms of CPU per 376 KB request, on the
    cores the system under test needs."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self._port = port
        self._head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._streams
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self._port}\r\n{self._head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.writelines([head.encode(), body])
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await reader.readexactly(length)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            with contextlib.suppress(OSError):
                await self._streams[1].wait_closed()


INFRA_ROLES = frozenset({"postgresql", "ferretdb", "kafka"})


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU time (user + system) so far of the processes involved, by role (Linux /proc)."""
    if len(procs) == 1:
        roles = {str(procs[0].pid): "usage-meter"}
    else:  # the API process, then the consumer processes (their CPU summed)
        roles = {str(p.pid): "usage-meter consumer" for p in procs[1:]}
        roles[str(procs[0].pid)] = "usage-meter API"
    roles[str(os.getpid())] = "bench clients"
    totals: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, _, tail = f.read().rpartition(")")
        except OSError:
            continue
        fields = tail.split()
        command = head.partition("(")[2]  # the executable's name, e.g. postgres, ferretdb-1.24.2, java
        role = roles.get(pid) or next(
            (
                name
                for prefix, name in (("postgres", "postgresql"), ("ferretdb", "ferretdb"), ("java", "kafka"))
                if command.startswith(prefix)
            ),
            None,
        )
        if role:
            ticks = int(fields[11]) + int(fields[12])
            if role in INFRA_ROLES:
                # Plus what its exited children used (PostgreSQL's backends and autovacuum workers
                # come and go): without it, a child exiting during a phase took its CPU out of the sum.
                ticks += int(fields[13]) + int(fields[14])
            totals[role] = totals.get(role, 0.0) + ticks / tick
    return totals


def spawn(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "usage_meter", "serve"], env=env, stdout=log, stderr=log, cwd=ROOT
    )


async def wait_ready(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "usage-meter never became ready"
        await asyncio.sleep(0.3)


async def wait_assigned(clients: list[httpx.AsyncClient], timeout_s: float) -> None:
    """Until the consumer group has settled: every consumer process holds a partition (or all are
    taken), so that no rebalance pauses the measurement."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = [
            (await client.get("/v1/admin/usage/ingest-stats")).json().get("partitions", [])
            for client in clients
        ]
        taken = sum(len(h) for h in held)
        if taken == 3 and (all(held) or len(clients) > 3):
            return
        assert time.monotonic() < deadline, f"consumer group never settled: {held}"
        await asyncio.sleep(0.3)


# Limits of a paying plan the bench stays well within: every quota is evaluated, none is crossed.
BENCH_LIMITS = TenantLimits(
    max_users=100,
    max_projects=50,
    max_requests_per_month=10_000_000,
    max_tokens_per_month=100_000_000_000,
    max_storage_gb=100,
)


async def create_tenants(
    tenants: list[str], prefix: str, clients: list[httpx.AsyncClient], timeout_s: float
) -> None:
    """Create the bench's tenants as the tenancy service does (`tenancy.TenantCreated` on its topic,
    keyed by tenant, with plan limits), and wait until the usage-meter has read their limits (each
    one is evaluated once when its limits arrive): quota evaluation then does for them what it does
    for real tenants, which always have limits."""
    producer = new_producer(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "usage-meter-bench")
    await producer.start()
    try:
        for tenant in tenants:
            event = TenantCreated(
                tenant_id=tenant, name=tenant, plan="pro", limits=BENCH_LIMITS, created_by="usr_bench"
            )
            envelope = new_envelope(
                REGISTRY,
                event,
                stream_id=f"tenant:{tenant}",
                stream_version=1,
                tenant_id=tenant,
                producer="bench",
            )
            await producer.send_and_wait(
                f"{prefix}{TENANCY}",
                value=encode(envelope.to_wire()),
                key=tenant.encode(),
                # The headers the tenancy service's relay writes.
                headers=[
                    ("event_type", envelope.event_type.encode()),
                    ("schema_version", str(envelope.schema_version).encode()),
                    ("event_id", str(envelope.event_id).encode()),
                ],
            )
    finally:
        await producer.stop()
    deadline = time.monotonic() + timeout_s
    while True:
        evaluated = 0
        for client in clients:
            evaluated += (await client.get("/v1/admin/usage/ingest-stats", params={"lag": "false"})).json()[
                "quota_evaluations"
            ]
        if evaluated >= len(tenants):
            return
        assert time.monotonic() < deadline, f"limits of {evaluated} of {len(tenants)} tenants read"
        await asyncio.sleep(0.2)


def steady_consumer(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The consumer's counters between two `wait_applied` readings."""
    batches = after["batches"] - before["batches"]
    applied = after["applied"] - before["applied"]
    return {
        "batches": batches,
        "events_per_batch": round(applied / batches) if batches else None,
        "aggregate_writes": after["aggregate_writes"] - before["aggregate_writes"],
        # Quota evaluations that read the database, and those settled in memory.
        "quota_evaluations": after["quota_evaluations"] - before["quota_evaluations"],
        "quota_checks": after["quota_checks"] - before["quota_checks"],
        "stage_seconds": {
            k: round(v - before["stage_seconds"].get(k, 0.0), 3) for k, v in after["stage_seconds"].items()
        },
    }


async def wait_applied(clients: list[httpx.AsyncClient], total: int, timeout_s: float) -> dict[str, Any]:
    """The consumer processes' ingest stats once they have applied `total` events together: counts
    and stage times summed; lag quantiles of the process with the highest p99 (quantiles of separate
    processes do not merge exactly; the worst one is the honest figure)."""
    deadline = time.monotonic() + timeout_s
    while True:
        # Polled without the lag percentiles: the counters are all a poll needs (the percentiles
        # once sorted up to 200,000 samples per call; the histogram now reads them cheaply).
        each: list[dict[str, Any]] = [
            (await client.get("/v1/admin/usage/ingest-stats", params={"lag": "false"})).json()
            for client in clients
        ]
        applied = sum(s["applied"] for s in each)
        if applied >= total:
            each = [(await client.get("/v1/admin/usage/ingest-stats")).json() for client in clients]
            merged = {k: sum(s[k] for s in each) for k in CONSUMER_COUNTERS}
            stages = {k for s in each for k in s["stage_seconds"]}
            merged["stage_seconds"] = {
                k: round(sum(s["stage_seconds"].get(k, 0.0) for s in each), 3) for k in sorted(stages)
            }
            merged["lag_ms"] = max((s["lag_ms"] for s in each), key=lambda lag: lag.get("p99") or 0)
            return merged
        assert time.monotonic() < deadline, f"only {applied} of {total} applied: {each}"
        await asyncio.sleep(0.05)


def cpu_probe_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes here now (best of 3): this machine's speed drifts
    by up to ~50 % within an hour, so each run records it next to its results (lower is faster)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(range(3_000_000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events to send (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per bulk request (max 1000)")
    parser.add_argument(
        "--warmup-events", type=int, default=20_000, help="events sent through before the clock starts"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument(
        "--tenant-limits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create the tenants with plan limits first (tenancy.TenantCreated), as real tenants have, "
        "so that quota evaluation reads them (default; --no-tenant-limits: tenants without limits, "
        "as the results before 2026-11-28 evening were measured)",
    )
    parser.add_argument(
        "--consumer-events", type=int, default=20000, help="usage events per consumer batch, about"
    )
    parser.add_argument(
        "--lag-rate", type=int, default=20000, help="events/s of the steady lag phase (default: the target)"
    )
    parser.add_argument(
        "--lag-events",
        type=int,
        default=600_000,
        help="events of the steady lag phase (default 600,000: 30 s at the default rate)",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs; the median one is reported (default 5)")
    parser.add_argument("--note", default="", help="the conditions of the run, kept in the results")
    parser.add_argument(
        "--single-process",
        dest="split",
        action="store_false",
        help="run API and consumer in one process (default: an API-only and a consumer process)",
    )
    parser.add_argument(
        "--consumers",
        type=int,
        default=1,
        help="consumer processes (replicas in one group) besides the API process; the topic has 3 partitions",
    )
    parser.add_argument(
        "--cpu-cap",
        type=float,
        default=None,
        metavar="CORES",
        help="run the whole system (infrastructure, services, this benchmark) capped at CORES CPUs' "
        "worth of time, e.g. 1.4 of the 2 (a CFS quota; root and the cgroup cpu controller needed): "
        "a slower machine on demand",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "usage_meter.json"))
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C, so that a capped system is released on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    capped: CpuCap | None = None
    if args.cpu_cap is not None:
        try:
            # The system `make up` runs from this checkout, and this process (its usage-meter
            # processes, started later, inherit the group).
            capped = CpuCap(args.cpu_cap, lambda: sorted({os.getpid(), *stack_pids(ROOT)}))
        except CpuCapError as exc:
            parser.error(str(exc))
        left_over = capped.left_over
    else:
        left_over = release_leftover() if os.geteuid() == 0 else []
    if left_over:
        print(f"released processes that a killed capped run had left capped: {left_over}", file=sys.stderr)
    cap: contextlib.AbstractContextManager[dict[str, Any] | None] = capped or contextlib.nullcontext(None)
    with cap as cap_record:
        result = run_all(args)
    if cap_record is not None:
        result["cpu_cap"] = cap_record
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    # Several runs, each with fresh processes, database and topics: this machine's speed varies by
    # ±20 % from one minute to the next (more within an hour), so one run says little. The median
    # run is reported whole; every run records the CPU probe taken just before it.
    results = []
    for number in range(1, args.runs + 1):
        probe = cpu_probe_ms()
        results.append(asyncio.run(run(args)))
        results[-1]["machine"]["cpu_probe_ms_before"] = probe
        print(
            f"run {number}/{args.runs}: {results[-1]['to_aggregates']['events_per_s']} events/s to the "
            f"aggregates, steady-phase lag p99 {results[-1]['steady_rate']['lag_ms']['p99']} ms "
            f"(cpu probe {probe} ms)",
            file=sys.stderr,
        )
    ranked = sorted(results, key=lambda r: r["to_aggregates"]["events_per_s"])
    return {
        **ranked[len(ranked) // 2],
        "runs": [
            {
                "to_aggregates_events_per_s": r["to_aggregates"]["events_per_s"],
                "bulk_api_events_per_s": r["bulk_api"]["events_per_s"],
                "steady_lag_p99_ms": r["steady_rate"]["lag_ms"]["p99"],
                "cpu_probe_ms_before": r["machine"]["cpu_probe_ms_before"],
                "monthly_totals_mismatches": r["monthly_totals_mismatches"],
            }
            for r in results
        ],
    }


if __name__ == "__main__":
    main()
