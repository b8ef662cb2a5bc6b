"""Gateway's view of registry events: a ledger of live projects per tenant (for current_usage and
the plan's max_projects). Ledger style: one document per project, so redelivery changes nothing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from ailab_contracts import EventEnvelope
from ailab_contracts.events import registry as reg
from ailab_runtime.consumer import Handler


def project_ledger_handler(db: AsyncDatabase[dict[str, Any]]) -> Handler:
    projects = db["tenant_projects"]

    async def handle(envelope: EventEnvelope, event: BaseModel) -> None:
        if isinstance(event, reg.ProjectCreated):
            try:
                await projects.insert_one(
                    {
                        "_id": f"{envelope.tenant_id}:{event.project_id}",
                        "tenant_id": envelope.tenant_id,
                        "event_id": str(envelope.event_id),
                    }
                )
            except DuplicateKeyError:
                pass  # already counted
        elif isinstance(event, reg.ProjectDeleted):
            await projects.delete_one({"_id": f"{envelope.tenant_id}:{event.project_id}"})

    return handle
