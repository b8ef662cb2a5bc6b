"""PostgreSQL data directories made outside a checkout (`$AILAB_PG_ALT_ROOT/ailab-pg-<hash>`, when
the postgres OS user cannot reach the checkout's `.data`) are removed by the next `up` once their
checkout is gone (scripts/infra/common.sh `pg_prune_orphans`), and only then."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

COMMON = Path(__file__).resolve().parents[2] / "scripts" / "infra" / "common.sh"


def _prune(root: Path, own_base: Path) -> str:
    script = f'source "{COMMON}"; PG_ALT_BASE="{own_base}"; pg_prune_orphans'
    done = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": "/usr/bin:/bin", "HOME": str(root), "AILAB_PG_ALT_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout + done.stderr


def _data_dir(root: Path, name: str, owner: Path | None, postmaster_pid: int | None = None) -> Path:
    base = root / f"ailab-pg-{name}"
    (base / "data").mkdir(parents=True)
    if owner is not None:
        (base / "owner").write_text(f"{owner}\n")
    if postmaster_pid is not None:
        (base / "data" / "postmaster.pid").write_text(f"{postmaster_pid}\n/some/data\n")
    return base


def test_only_directories_whose_checkout_is_gone_and_whose_server_is_down_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "alt"
    checkout = tmp_path / "checkout" / ".data"
    checkout.mkdir(parents=True)
    gone = tmp_path / "deleted-clone" / ".data"
    orphan = _data_dir(root, "orphan", gone)
    kept_owner = _data_dir(root, "owned", checkout)
    no_owner = _data_dir(root, "unknown", None)
    running = _data_dir(root, "running", gone, postmaster_pid=os.getpid())
    own = _data_dir(root, "own", gone)  # this checkout's own (PG_ALT_BASE)

    output = _prune(root, own)

    assert not orphan.exists() and f"removing {orphan}" in output
    assert kept_owner.exists() and no_owner.exists() and running.exists() and own.exists()
