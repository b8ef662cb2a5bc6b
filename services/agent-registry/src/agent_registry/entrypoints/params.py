"""Request parameters every feature area's routes take, declared once so that their validation and
their OpenAPI documentation stay the same everywhere (prompts, tools, datasets, experiments, core)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path, Query

from ailab_contracts.events.registry import EntityStatus
from ailab_runtime.pagination import MAX_LIMIT

TenantId = Annotated[str, Path(min_length=1, max_length=128, description="Owning tenant.", examples=["demo"])]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retrying with the same key and body returns the first response; another body gets 422.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]


def if_match_header(entity: str, etag_source: str = "an ETag") -> Any:
    """The `If-Match` header, documented with the entity it guards (`IfMatch` below is the generic one)."""
    return Header(
        alias="If-Match",
        description=f'`"<version>"` from {etag_source}, or `*`: '
        f"the write applies only if the {entity} is still at that version.",
    )


def status_query(entities: str) -> Any:
    """`?status=`, documented with the entities it filters."""
    return Query(description=f"Only {entities} with this status.")


def tag_query(entities: str) -> Any:
    """`?tag=`, documented with the entities it filters."""
    return Query(max_length=64, description=f"Only {entities} carrying this tag.")


IfMatch = Annotated[str | None, if_match_header("entity")]
StatusFilter = Annotated[EntityStatus | None, status_query("entities")]
TagFilter = Annotated[str | None, tag_query("entities")]
