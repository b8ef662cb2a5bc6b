"""A CPU cap for benchmarks: the whole system under test (Kafka, PostgreSQL, FerretDB, the idle
services and the benchmark with the processes it starts) moved into one cgroup whose CFS quota lets
it use at most `cores` CPUs' worth of time, then moved back.

Why: this machine's speed drifts by up to ~50 % within an hour, so a result says little about the
next hour. A cap is a slower machine on demand and reproducible: with 1.4 of the 2 cores, a target
still held is one held with 30 % of the machine taken away.

Linux only, as root, with the cgroup `cpu` controller (v1 at /sys/fs/cgroup/cpu, or v2 with `cpu`
in cgroup.controllers). A short CFS period (10 ms) spreads the throttling thinly, like a uniformly
slower CPU, instead of stalling everything for tens of milliseconds at a time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

PERIOD_US = 10_000
CGROUP_NAME = "ailab-bench-cap"
# Executables of the stack (`make up`): the infrastructure, by the name /proc/PID/stat gives.
STACK_COMMANDS = ("postgres", "ferretdb", "java", "stripe-mock")


class CpuCapError(RuntimeError):
    """The cap cannot be set here (not root, no cpu controller, a cgroup write refused)."""


def _v1_root() -> Path | None:
    root = Path("/sys/fs/cgroup/cpu")
    return root if (root / "cpu.cfs_quota_us").exists() or (root / "cgroup.procs").exists() else None


def _v2_root() -> Path | None:
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            return root
    return None


def stack_pids(venv: Path) -> list[int]:
    """The processes of the running system: the infrastructure's, and every Python process started
    from the repository's virtualenv (the services of `make up`, this benchmark)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/stat").read_text().partition("(")[2].rpartition(")")[0]
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command.startswith(STACK_COMMANDS) or argv[0].decode(errors="replace").startswith(str(venv)):
            pids.append(int(entry))
    return pids


def _move(procs_file: Path, pids: list[int]) -> int:
    moved = 0
    for pid in pids:
        try:
            procs_file.write_text(f"{pid}\n")
            moved += 1
        except ProcessLookupError:
            continue  # exited meanwhile
        except OSError as exc:
            if not Path(f"/proc/{pid}").exists():
                continue
            raise CpuCapError(f"cannot move process {pid} into {procs_file.parent}: {exc}") from exc
    return moved


def _throttling(group: Path, v2: bool) -> dict[str, float]:
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines() if line.strip())
    if v2:
        return {
            "periods": int(stat["nr_periods"]),
            "throttled_periods": int(stat["nr_throttled"]),
            "throttled_s": round(int(stat["throttled_usec"]) / 1e6, 2),
        }
    return {
        "periods": int(stat["nr_periods"]),
        "throttled_periods": int(stat["nr_throttled"]),
        "throttled_s": round(int(stat["throttled_time"]) / 1e9, 2),
    }


class CpuCap:
    """A cgroup limited to `cores` CPUs, made (and checked) when constructed. Entered, it takes in
    the `processes` (e.g. `stack_pids`); the exit moves every process in it (and any child started
    meanwhile) back to the root group and removes it."""

    def __init__(self, cores: float, processes: Callable[[], list[int]], *, name: str = CGROUP_NAME) -> None:
        if os.geteuid() != 0:
            raise CpuCapError("--cpu-cap needs root (it writes cgroup files)")
        if not 0 < cores <= (os.cpu_count() or 1):
            raise CpuCapError(f"--cpu-cap must be in (0, {os.cpu_count()}] cores, not {cores}")
        v1_root = _v1_root()
        root = v1_root or _v2_root()
        if root is None:
            raise CpuCapError("no cgroup cpu controller (looked for /sys/fs/cgroup/cpu and cgroup v2 'cpu')")
        self.root, self.v2, self.processes = root, v1_root is None, processes
        self.group = root / name
        quota = max(1000, round(cores * PERIOD_US))
        try:
            self.group.mkdir(exist_ok=True)
            if self.v2:
                (self.group / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            else:
                (self.group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
                (self.group / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.group.rmdir()
            raise CpuCapError(f"cannot set up cgroup {self.group}: {exc}") from exc
        # Kept with the results; the throttling counters are filled in on exit.
        self.record: dict[str, Any] = {"cores": cores, "period_us": PERIOD_US, "cgroup": str(self.group)}
        self._before: dict[str, float] = {}

    def __enter__(self) -> dict[str, Any]:
        try:
            self.record["processes_moved"] = _move(self.group / "cgroup.procs", self.processes())
        except BaseException:
            self._release()
            raise
        self._before = _throttling(self.group, self.v2)
        return self.record

    def __exit__(self, *exc: object) -> None:
        try:
            after = _throttling(self.group, self.v2)
            self.record.update({key: round(after[key] - self._before[key], 2) for key in after})
        finally:
            self._release()

    def _release(self) -> None:
        remaining = [int(p) for p in (self.group / "cgroup.procs").read_text().split()]
        _move(self.root / "cgroup.procs", remaining)
        with contextlib.suppress(OSError):
            self.group.rmdir()
