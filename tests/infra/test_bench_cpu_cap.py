"""The benchmark's CPU cap (bench/cpu_cap.py): processes go into a cgroup with the CFS quota asked
for, are throttled there, and come back out with the group removed. Needs root and the cgroup cpu
controller (this machine has both); skipped elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from bench.cpu_cap import PERIOD_US, CpuCap, CpuCapError, stack_pids

BUSY_LOOP = "while True: pass"


def _cgroup_supported() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        CpuCap(0.5, list, name=f"ailab-probe-{uuid.uuid4().hex[:8]}")._release()
    except CpuCapError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _cgroup_supported(), reason="needs root and the cgroup cpu controller")


def _cpu_cgroup_of(pid: int) -> str:
    """The cpu controller's cgroup path of `pid` (v1 line `N:cpu:/path`, or v2 `0::/path`)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))


def test_capped_processes_are_throttled_and_released(tmp_path: Path) -> None:
    name = f"ailab-test-{uuid.uuid4().hex[:8]}"
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        cap = CpuCap(0.2, lambda: [busy.pid], name=name)
        quota_file = cap.group / ("cpu.max" if cap.v2 else "cpu.cfs_quota_us")
        assert quota_file.read_text().split()[0] == str(round(0.2 * PERIOD_US))
        with cap as record:
            assert record["processes_moved"] == 1
            assert _cpu_cgroup_of(busy.pid).endswith(f"/{name}")
            # A process put into the group meanwhile is released with it.
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            cap.group.joinpath("cgroup.procs").write_text(f"{child.pid}\n")
            time.sleep(0.5)  # a busy loop at 0.2 CPUs over 50 periods: throttled in most of them
        assert record["periods"] > 0
        assert 0 < record["throttled_periods"] <= record["periods"]
        assert record["throttled_s"] > 0
        assert not cap.group.exists()
        assert not _cpu_cgroup_of(busy.pid).endswith(f"/{name}")
        assert not _cpu_cgroup_of(child.pid).endswith(f"/{name}")
        child.kill()
    finally:
        busy.kill()
        busy.wait()


def test_the_stack_is_found_by_executable_and_virtualenv(tmp_path: Path) -> None:
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    inside = subprocess.Popen([str(venv_python), "-c", "import time; time.sleep(30)"])
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        found = stack_pids(tmp_path / "venv")
        assert inside.pid in found
        assert outside.pid not in found
    finally:
        for proc in (inside, outside):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("cores", [0, -1, (os.cpu_count() or 1) + 1])
def test_a_cap_outside_the_machine_is_refused(cores: float) -> None:
    with pytest.raises(CpuCapError, match="must be in"):
        CpuCap(cores, list)
