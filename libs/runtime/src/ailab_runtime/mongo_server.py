"""Which MongoDB-wire server a service talks to. Production runs MongoDB 7+; the local stack without
Docker runs FerretDB 1.24, whose query planning differs enough that a few adapters pick their
queries by it (e.g. the usage ledger's owner reads)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


async def is_ferretdb(db: AsyncDatabase[Any]) -> bool:
    """Whether the server is FerretDB (its `buildInfo` answer adds `ferretdbVersion`)."""
    return "ferretdbVersion" in await db.client.admin.command("buildInfo")
