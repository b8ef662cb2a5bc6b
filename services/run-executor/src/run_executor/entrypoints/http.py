"""HTTP details shared by the run routes: ETags, If-Match, error mapping, documented error responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ailab_runtime import preconditions
from ailab_runtime.errors import ErrorResponse, error_response

from ..application.handlers import Precondition
from ..domain.errors import RunsError, TooManyRuns


def parse_if_match(value: str | None) -> Precondition | None:
    """The `If-Match` header (parsed by `ailab_runtime.preconditions`) as this service's precondition."""
    header = preconditions.parse_if_match(value)
    return None if header is None else Precondition(versions=header.versions, any_version=header.any_version)


def install_runs_error_handler(app: FastAPI) -> None:
    @app.exception_handler(RunsError)
    async def _runs_error(_: Request, exc: RunsError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, TooManyRuns) else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)


_ERROR_DESCRIPTIONS = {
    401: "Missing or invalid internal service credential (`unauthorized`).",
    404: "No such run in this tenant (`not_found`).",
    409: "The run's status does not allow it (`run_already_finished`, `run_not_finished`), another "
    "request changed it first (`conflict`), or the Idempotency-Key is in use.",
    412: "`If-Match` does not name the run's current version (`precondition_failed`).",
    422: "Invalid input (`validation_error`, `invalid_reference` for an unknown agent or version, "
    "`agent_has_no_version`, `invalid_value`, `inputs_too_large`, `idempotency_key_reused`).",
    429: "The tenant's concurrent runs and its queue are full (`too_many_runs`); see `Retry-After`.",
    503: "The executor is shutting down (`executor_stopping`).",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"model": ErrorResponse, "description": _ERROR_DESCRIPTIONS[code]} for code in (401, *codes)
    }


ETAG_HEADER = {
    "ETag": {
        "description": '`"<version>"` of the run stream; send it back in `If-Match`.',
        "schema": {"type": "string"},
    }
}
CREATED_HEADERS = {
    **ETAG_HEADER,
    "Location": {"description": "URL of the run.", "schema": {"type": "string"}},
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the same "
        "Idempotency-Key.",
        "schema": {"type": "string"},
    },
}
