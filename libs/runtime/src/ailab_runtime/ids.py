"""Time-ordered, url-safe identifiers (`prj_0192f3a4b5c6_9f2e1c0d`): sorting by id sorts by creation."""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(5)}"
