"""Errors of the runs domain, each with a stable code and the HTTP status the API answers with."""

from __future__ import annotations

from typing import Any


class RunsError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class RunNotFound(RunsError):
    status = 404
    code = "not_found"


class InvalidTransition(RunsError):
    """The run's status does not allow the command (e.g. cancelling a finished run)."""

    status = 409
    code = "invalid_transition"


class RunAlreadyFinished(InvalidTransition):
    code = "run_already_finished"


class RunNotFinished(InvalidTransition):
    code = "run_not_finished"


class InvalidReference(RunsError):
    """The body names an agent or version this tenant does not have."""

    status = 422
    code = "invalid_reference"


class InvalidValue(RunsError):
    status = 422
    code = "invalid_value"


class PreconditionFailed(RunsError):
    status = 412
    code = "precondition_failed"


class TooManyRuns(RunsError):
    """The tenant's concurrent runs and its queue are full."""

    status = 429
    code = "too_many_runs"

    def __init__(self, message: str, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s
