"""Which MongoDB-wire server a service talks to. Production runs MongoDB 7+; the local stack without
Docker runs FerretDB 1.24, whose query planning differs enough that a few adapters pick their
queries by it (e.g. the usage ledger's owner reads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


def is_ferretdb_build(build_info: Mapping[str, Any]) -> bool:
    """Whether a server's `buildInfo` answer is FerretDB's (it adds `ferretdbVersion`)."""
    return "ferretdbVersion" in build_info


async def is_ferretdb(db: AsyncDatabase[Any]) -> bool:
    return is_ferretdb_build(await db.client.admin.command("buildInfo"))
