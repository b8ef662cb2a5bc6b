"""A CPU cap for benchmarks: the system under test (this checkout's Kafka, PostgreSQL, FerretDB,
stripe-mock and services, as `make up` started them, and the benchmark with the processes it starts)
moved into one cgroup whose CFS quota lets it use at most `cores` CPUs' worth of time, then moved
back to the groups they came from.

Why: this machine's speed drifts by up to ~50 % within an hour, so a result says little about the
next hour. A cap is a slower machine on demand and reproducible: with 1.4 of the 2 cores, a target
still held is one held with 30 % of the machine taken away.

Which processes: those named in the checkout's run directory (`.data/run/*.pid`, written by
scripts/infra; `services.json`, written by `make up`) whose command line or working directory is in
the checkout (a stale pid file never picks another program), every process descended from them
(PostgreSQL's backends, ...), and what the caller adds (the benchmark itself). Nothing else on the
machine is touched.

Linux only, as root, with the cgroup `cpu` controller (v1 at /sys/fs/cgroup/cpu, or v2 with `cpu`
enabled for child groups). A short CFS period (10 ms) spreads the throttling thinly, like a
uniformly slower CPU, instead of stalling everything for tens of milliseconds at a time.

A run killed with SIGKILL cannot move its processes back: the next `CpuCap` (or `release_leftover`)
finds the group still holding them and moves them to the root group, saying so."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

PERIOD_US = 10_000
MIN_CORES = 0.1  # a quota of 1 ms per 10 ms period, the kernel's minimum
CGROUP_NAME = "ailab-bench-cap"


class CpuCapError(RuntimeError):
    """The cap cannot be set here (not root, no cpu controller, a cgroup write refused)."""


def _v1_root() -> Path | None:
    root = Path("/sys/fs/cgroup/cpu")
    return root if (root / "cgroup.procs").exists() else None


def _v2_root() -> Path | None:
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        controllers = root / "cgroup.controllers"
        if controllers.exists() and "cpu" in controllers.read_text().split():
            return root
    return None


def cgroup_root() -> tuple[Path, bool] | None:
    """The hierarchy with the cpu controller, and whether it is cgroup v2."""
    v1 = _v1_root()
    if v1 is not None:
        return v1, False
    v2 = _v2_root()
    return (v2, True) if v2 is not None else None


def cpu_cgroup_of(pid: int, v2: bool) -> str | None:
    """The path of `pid`'s group in the cpu hierarchy (`/` for the root), or None if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (v2 and controllers == "") or (not v2 and "cpu" in controllers.split(",")):
            return path
    return None


def _in_checkout(pid: int, root: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    # Under the checkout's directory: `/work/main/` is not a prefix of `/work/main2/...`.
    return f"{str(root).rstrip('/')}/" in cmdline or Path(cwd).is_relative_to(root)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def stack_pids(checkout: Path, run_dir: Path | None = None) -> list[int]:
    """The processes of the system started from `checkout` (see the module docstring), with their
    descendants; `run_dir` defaults to `checkout/.data/run`."""
    run_dir = run_dir or checkout / ".data" / "run"
    named: set[int] = set()
    for pid_file in run_dir.glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            named.add(int(pid_file.read_text().split()[0]))
    with contextlib.suppress(OSError, ValueError, AttributeError):
        named.update(int(pid) for pid in json.loads((run_dir / "services.json").read_text()).values())
    found: list[int] = []
    children = _children()
    pending = [pid for pid in sorted(named) if _in_checkout(pid, checkout)]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.append(pid)
            pending.extend(children.get(pid, ()))
    return sorted(found)


def _move(procs_file: Path, pid: int) -> str | None:
    """Moves `pid` into the group of `procs_file`; the error, if any (a process gone is none)."""
    try:
        procs_file.write_text(f"{pid}\n")
    except OSError as exc:
        if Path(f"/proc/{pid}").exists():
            return f"process {pid} into {procs_file.parent}: {exc}"
    return None


def _throttling(group: Path, v2: bool) -> dict[str, float]:
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines() if line.strip())
    throttled_s = int(stat["throttled_usec"]) / 1e6 if v2 else int(stat["throttled_time"]) / 1e9
    return {
        "periods": int(stat["nr_periods"]),
        "throttled_periods": int(stat["nr_throttled"]),
        "throttled_s": round(throttled_s, 2),
    }


def _group_pids(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def release_leftover(name: str = CGROUP_NAME) -> list[int]:
    """Empties and removes a group left by a run that was killed before it could: its processes go to
    the root group (where they were before is not known any more). Returns their pids."""
    found = cgroup_root()
    if found is None:
        return []
    root, _ = found
    group = root / name
    if not group.is_dir():
        return []
    pids = _group_pids(group)
    for pid in pids:
        _move(root / "cgroup.procs", pid)
    with contextlib.suppress(OSError):
        group.rmdir()
    return pids


class CpuCap:
    """A cgroup limited to `cores` CPUs, made (and checked) when constructed. Entered, it takes in
    the `processes` (e.g. `stack_pids`); the exit moves each back to the group it was in (a process
    that entered the group otherwise, e.g. started meanwhile, to its parent's, else to the root) and
    removes the group."""

    def __init__(self, cores: float, processes: Callable[[], list[int]], *, name: str = CGROUP_NAME) -> None:
        cpus = os.cpu_count() or 1
        if not MIN_CORES <= cores <= cpus:
            raise CpuCapError(f"a CPU cap must be {MIN_CORES}-{cpus} cores, not {cores}")
        if os.geteuid() != 0:
            raise CpuCapError("a CPU cap needs root (it writes cgroup files)")
        found = cgroup_root()
        if found is None:
            raise CpuCapError("no cgroup cpu controller (looked for /sys/fs/cgroup/cpu and cgroup v2 'cpu')")
        self.root, self.v2 = found
        self.processes = processes
        self.group = self.root / name
        self.left_over = release_leftover(name)
        quota = round(cores * PERIOD_US)
        try:
            if self.v2:
                subtree = self.root / "cgroup.subtree_control"
                if "cpu" not in subtree.read_text().split():
                    subtree.write_text("+cpu\n")
            self.group.mkdir()
            if self.v2:
                (self.group / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            else:
                (self.group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
                (self.group / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.group.rmdir()
            raise CpuCapError(f"cannot set up cgroup {self.group} with the cpu controller: {exc}") from exc
        # Kept with the results; the throttling counters are filled in on exit.
        self.record: dict[str, Any] = {
            "cores": cores,
            "quota_us": quota,
            "period_us": PERIOD_US,
            "cgroup": str(self.group),
        }
        self._origin: dict[int, str] = {}  # pid -> the cpu group it came from
        self._before: dict[str, float] = {}

    def __enter__(self) -> dict[str, Any]:
        try:
            errors = []
            for pid in self.processes():
                origin = cpu_cgroup_of(pid, self.v2)
                if origin is None:
                    continue  # gone
                self._origin[pid] = origin
                error = _move(self.group / "cgroup.procs", pid)
                if error:
                    errors.append(error)
            if errors:
                raise CpuCapError("cannot cap " + "; ".join(errors[:3]))
            self.record["processes_moved"] = len(self._origin)
            self._before = _throttling(self.group, self.v2)
        except BaseException:
            self._release()
            raise
        return self.record

    def __exit__(self, *exc: object) -> None:
        try:
            after = _throttling(self.group, self.v2)
            self.record.update({key: round(after[key] - self._before[key], 2) for key in after})
        except (OSError, KeyError, ValueError) as error:  # the results matter more than the counters
            self.record["throttling_error"] = str(error)
        finally:
            self._release()

    def _origin_of(self, pid: int) -> str:
        """Where `pid` goes back to: its own group before, its parent's, else the root."""
        if pid in self._origin:
            return self._origin[pid]
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
            if parent in self._origin:
                return self._origin[parent]
        return "/"

    def _release(self) -> None:
        """Empties the group (a process inside may fork meanwhile, hence the rounds) and removes it;
        raises if it could not, naming what is left."""
        errors: list[str] = []
        for _round in range(20):
            pids = _group_pids(self.group)
            if not pids:
                break
            for pid in pids:
                target = self.root / self._origin_of(pid).lstrip("/") / "cgroup.procs"
                error = _move(target, pid)
                if error and _move(self.root / "cgroup.procs", pid) is not None:
                    errors.append(error)
        try:
            self.group.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            left = _group_pids(self.group)
            raise CpuCapError(
                f"could not remove {self.group} ({exc}); still capped: {left}; errors: {errors[:3]}"
            ) from exc
