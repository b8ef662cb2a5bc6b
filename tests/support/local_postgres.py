"""psql against the local stack's PostgreSQL (FerretDB's backend, scripts/infra), for tests that check
what FerretDB stored there."""

from __future__ import annotations

import glob
import os
import subprocess


def psql_rows(query: str) -> list[list[str]] | None:
    """The rows of `query` in database `ferretdb` (fields split on `|`), or None when psql or that
    server is not at hand (another MongoDB-wire server, a machine without PostgreSQL's client)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), key=lambda p: int(p.split("/")[4]))
    if not found:
        return None
    port = os.environ.get("AILAB_PG_PORT", "54329")
    command = [found[-1], "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "ferretdb", "-Atc", query]
    answer = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if answer.returncode != 0:
        return None
    return [line.split("|") for line in answer.stdout.splitlines() if line]
