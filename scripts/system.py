"""Start, watch and stop the seven AI Lab services as local processes.

`python scripts/system.py up` (what `make up` runs): starts every service, waits until each is
ready, prints the gateway URL and a demo login, then follows until Ctrl-C, which stops them all.
`--detach` returns after start-up instead; `python scripts/system.py down` stops a detached run.
The e2e tests use the same functions with their own ports, databases and topic prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> (python package, default port)
SERVICES: dict[str, tuple[str, int]] = {
    "agent-registry": ("agent_registry", 8001),
    "run-executor": ("run_executor", 8002),
    "usage-meter": ("usage_meter", 8003),
    "billing": ("billing", 8004),
    "toolset": ("toolset", 8005),
    "monitor": ("monitor", 8006),
    "gateway": ("gateway", 8000),  # last: it forwards to the others
}


@dataclass
class RunningSystem:
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    log_dir: Path = ROOT / ".data" / "logs"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


def service_env(
    ports: dict[str, int], base: dict[str, str], database_prefix: str = "ailab_"
) -> dict[str, dict[str, str]]:
    urls = {
        f"{name.replace('-', '_').upper()}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()
    }
    envs = {}
    for name in SERVICES:
        envs[name] = {
            **base,
            **urls,
            "PORT": str(ports[name]),
            "MONGODB_DATABASE": f"{database_prefix}{name.replace('-', '_')}",
        }
    return envs


def start_service(system: RunningSystem, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    package, _ = SERVICES[name]
    system.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(system.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", package, "serve"],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    system.procs[name] = proc
    return proc


def wait_ready(
    system: RunningSystem, names: list[str] | None = None, timeout_s: float = 90.0, progress: bool = False
) -> None:
    pending = list(names or system.procs)
    deadline = time.monotonic() + timeout_s
    while pending:
        for name in list(pending):
            proc = system.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {system.log_dir / (name + '.log')}"
                )
            try:
                with urllib.request.urlopen(f"{system.url(name)}/readyz", timeout=2) as reply:
                    if reply.status == 200:
                        pending.remove(name)
                        if progress:
                            print(f"  ready: {name} on :{system.ports[name]}", flush=True)
            except (urllib.error.URLError, OSError):
                pass
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout_s}s: {', '.join(pending)}")
        if pending:
            time.sleep(0.25)


def restart_service(system: RunningSystem, name: str) -> None:
    start_service(system, name, system.envs[name])
    wait_ready(system, [name])


def stop_service(
    system: RunningSystem, name: str, sig: int = signal.SIGTERM, timeout_s: float = 15.0
) -> None:
    proc = system.procs.get(name)
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def stop_all(system: RunningSystem) -> None:
    for name in reversed(list(system.procs)):
        stop_service(system, name)


def start_all(
    ports: dict[str, int],
    base_env: dict[str, str],
    log_dir: Path,
    database_prefix: str = "ailab_",
    progress: bool = False,
) -> RunningSystem:
    system = RunningSystem(ports=ports, log_dir=log_dir)
    envs = service_env(ports, base_env, database_prefix)
    system.envs = envs
    try:
        for name in SERVICES:
            start_service(system, name, envs[name])
            if progress:
                print(f"  started: {name} (pid {system.procs[name].pid})", flush=True)
        wait_ready(system, progress=progress)
    except BaseException:
        stop_all(system)
        raise
    return system


PID_FILE = ROOT / ".data" / "run" / "services.json"
INFRA_ENV = ROOT / ".data" / "infra.env"


def infra_env() -> dict[str, str]:
    """Where `make infra-up` put Kafka, MongoDB and stripe-mock (`.data/infra.env`); variables
    already set in the environment win."""
    found: dict[str, str] = {}
    if INFRA_ENV.exists():
        for line in INFRA_ENV.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#") and key not in os.environ:
                found[key] = value
    return found


def _up(args: argparse.Namespace) -> int:
    ports = {name: port for name, (_, port) in SERVICES.items()}
    base = {
        **infra_env(),
        "ENVIRONMENT": os.environ.get("ENVIRONMENT", "development"),
        "JWT_PRIVATE_KEY_PATH": str(ROOT / ".data" / "gateway" / "jwt-signing-key.pem"),
    }
    print("[up] starting services...", flush=True)
    system = start_all(ports, base, ROOT / ".data" / "logs", progress=True)
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    PID_FILE.write_text(json.dumps({n: p.pid for n, p in system.procs.items()}))
    from gateway.config import Settings  # the defaults the gateway itself uses

    settings = Settings()
    print(
        f"""
AI Lab is running.
  Gateway:       {system.gateway_url}
  OpenAPI docs:  {system.gateway_url}/docs
  Demo login:    {settings.demo_admin_email} / {settings.demo_admin_password}   (tenant "demo", tenant_admin)
  Platform admin:{settings.platform_admin_email} / {settings.platform_admin_password}
  Try:  curl -s {system.gateway_url}/v1/auth/token -H 'content-type: application/json' \\
          -d '{{"email":"{settings.demo_admin_email}","password":"{settings.demo_admin_password}"}}'
  Logs: .data/logs/<service>.log
""",
        flush=True,
    )
    if args.detach:
        print("Detached; `make down` stops everything.")
        return 0
    print("Press Ctrl-C to stop.", flush=True)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping:
        for name, proc in system.procs.items():
            if proc.poll() is not None:
                print(f"[up] {name} exited with {proc.returncode}; stopping (see .data/logs/{name}.log)")
                stopping = True
                break
        time.sleep(0.5)
    print("\n[up] stopping services...", flush=True)
    stop_all(system)
    PID_FILE.unlink(missing_ok=True)
    return 0


def _down(_: argparse.Namespace) -> int:
    if not PID_FILE.exists():
        print("[down] no detached services recorded")
        return 0
    for name, pid in json.loads(PID_FILE.read_text()).items():
        try:
            os.kill(pid, signal.SIGTERM)
            print(f"[down] stopped {name} (pid {pid})")
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    for pid in json.loads(PID_FILE.read_text()).values():
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                time.sleep(0.2)
            except ProcessLookupError:
                break
    PID_FILE.unlink(missing_ok=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start all services and follow them until Ctrl-C")
    up.add_argument("--detach", action="store_true", help="return once everything is ready")
    sub.add_parser("down", help="stop services started with --detach")
    args = parser.parse_args()
    return _up(args) if args.command == "up" else _down(args)


if __name__ == "__main__":
    sys.exit(main())
