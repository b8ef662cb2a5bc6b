"""The benchmark's CPU cap (bench/cpu_cap.py): processes go into a cgroup with the CFS quota asked
for, are throttled there, and come back to the groups they came from, with the group removed; the
system is found from a checkout's run directory, descendants included, and nothing else. The cgroup
tests need root and the cgroup cpu controller (this machine has both) and are skipped elsewhere."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cpu_cap import MIN_CORES, PERIOD_US, CpuCap, CpuCapError, cgroup_root, cpu_cgroup_of, stack_pids

SLEEPER = "import time; time.sleep(60)"


def _can_make_cgroups() -> bool:
    """Root and a cpu hierarchy whose root directory is writable: nothing is created to find out."""
    found = cgroup_root()
    return os.geteuid() == 0 and found is not None and os.access(found[0], os.W_OK)


needs_cgroups = pytest.mark.skipif(not _can_make_cgroups(), reason="needs root and the cgroup cpu controller")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, killed and reaped whatever the test's outcome."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid:  # a group of its own: its children go too
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


@needs_cgroups
def test_capped_processes_are_throttled_then_back_where_they_were(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    found = cgroup_root()
    assert found is not None
    root, v2 = found
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    processes.append(busy)
    # It starts in a group of its own (as a service under systemd would), which it must return to.
    origin = root / f"ailab-test-origin-{uuid.uuid4().hex[:8]}"
    origin.mkdir()
    (origin / "cgroup.procs").write_text(f"{busy.pid}\n")
    assert cpu_cgroup_of(busy.pid, v2) == f"/{origin.name}"
    name = f"ailab-test-{uuid.uuid4().hex[:8]}"
    cap: CpuCap | None = None
    try:
        cap = CpuCap(MIN_CORES, lambda: [busy.pid], name=name)
        quota_file = cap.group / ("cpu.max" if v2 else "cpu.cfs_quota_us")
        assert quota_file.read_text().split()[0] == str(round(MIN_CORES * PERIOD_US))
        with cap as record:
            assert record["processes_moved"] == 1
            assert cpu_cgroup_of(busy.pid, v2) == f"/{name}"  # made at the hierarchy's root
            # Another process put into the group meanwhile comes out with it (to the root: it had no
            # group of its own on record, nor a parent that had).
            other = subprocess.Popen([sys.executable, "-c", SLEEPER])
            processes.append(other)
            cap.group.joinpath("cgroup.procs").write_text(f"{other.pid}\n")
            # A busy loop against a quota of 1 ms per 10 ms: throttled as soon as it gets a CPU.
            deadline = time.monotonic() + 10
            while "nr_throttled 0" in (cap.group / "cpu.stat").read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        assert 0 < record["throttled_periods"] <= record["periods"]
        assert "throttling_error" not in record
        assert not cap.group.exists()
        assert cpu_cgroup_of(busy.pid, v2) == f"/{origin.name}"
        assert cpu_cgroup_of(other.pid, v2) == "/"
    finally:
        if cap is not None and cap.group.exists():
            cap._release()
        busy.kill()
        busy.wait()
        origin.rmdir()


@needs_cgroups
def test_a_group_left_by_a_killed_run_is_emptied_by_the_next_cap(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER])
    processes.append(sleeper)
    name = f"ailab-test-{uuid.uuid4().hex[:8]}"
    killed = CpuCap(1, lambda: [sleeper.pid], name=name)
    killed.__enter__()  # and never exited, as when SIGKILL ends the run
    assert str(cpu_cgroup_of(sleeper.pid, killed.v2)).endswith(name)
    nxt = CpuCap(1, list, name=name)
    try:
        assert nxt.left_over == [sleeper.pid]
        assert not str(cpu_cgroup_of(sleeper.pid, killed.v2)).endswith(name)
    finally:
        nxt._release()
    assert not nxt.group.exists()


def test_the_system_is_found_from_the_checkouts_run_directory(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    checkout = tmp_path / "checkout"
    run_dir = checkout / ".data" / "run"
    run_dir.mkdir(parents=True)
    # A component with a child of its own (as PostgreSQL's backends are), started in the checkout.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SLEEPER!r}])",
        ],
        cwd=checkout,
        start_new_session=True,  # the fixture ends its child with it
    )
    service = subprocess.Popen([sys.executable, "-c", SLEEPER], cwd=checkout)
    elsewhere = subprocess.Popen([sys.executable, "-c", SLEEPER], cwd=tmp_path)  # a stale pid file's
    unrelated = subprocess.Popen([sys.executable, "-c", SLEEPER], cwd=checkout)  # not in the run dir
    processes.extend([parent, service, elsewhere, unrelated])
    (run_dir / "kafka.pid").write_text(f"{parent.pid}\n")
    (run_dir / "ferretdb.pid").write_text(f"{elsewhere.pid}\n")
    (run_dir / "broken.pid").write_text("not a pid\n")
    (run_dir / "services.json").write_text(json.dumps({"gateway": service.pid}))
    deadline = time.monotonic() + 10
    child: int | None = None
    while child is None and time.monotonic() < deadline:
        child = next(
            (
                int(entry)
                for entry in os.listdir("/proc")
                if entry.isdigit()
                and Path(f"/proc/{entry}/stat").exists()
                and _parent_of(int(entry)) == parent.pid
            ),
            None,
        )
        time.sleep(0.05)
    assert child is not None

    found = stack_pids(checkout)

    assert {parent.pid, child, service.pid} <= set(found)
    assert elsewhere.pid not in found
    assert unrelated.pid not in found


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.parametrize("cores", [0, MIN_CORES / 2, -1, (os.cpu_count() or 1) + 1])
def test_a_cap_outside_what_the_machine_has_is_refused(cores: float) -> None:
    with pytest.raises(CpuCapError, match="must be"):
        CpuCap(cores, list)
