"""Ports of experiment execution: what the runner needs from the rest of the service.

`bootstrap.py` wires them: `TargetRunner` to the flow engine (agent_version targets) and to prompt
rendering + one provider call (prompt_version targets); `ExampleSource` to the registry's internal
HTTP API (`registry_http.RegistryExampleSource`); `EventRecorder`, `StreamReader`, `OpenRunScanner`
and `RunRequestStore` to the service's own event store (`mongo.py`); `Judge` to the provider
registry (`judge.ProviderJudge`). Every port has an in-memory fake in `memory.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel

from ailab_contracts import EventEnvelope

# --- errors ----------------------------------------------------------------------------------------


class ExperimentRunError(Exception):
    """The run cannot go on; it ends `failed` with this code and message (e.g. `dataset_changed`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


DATASET_CHANGED = "dataset_changed"
DATASET_NOT_FOUND = "dataset_not_found"
DATASET_UNAVAILABLE = "dataset_unavailable"


class StreamConflict(Exception):
    """Another writer appended to the stream at the expected version first."""


# --- target ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetError:
    code: str
    message: str


@dataclass(frozen=True)
class TargetResult:
    """What one target run gave. `output` is any JSON value; `error` set means the example failed
    (its output, if any, is still kept). `latency_ms` None: the runner uses its own wall time.
    `cost_usd` None: unknown (unpriced model), never a silent zero."""

    output: Any = None
    run_id: str | None = None
    latency_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal | None = None
    error: TargetError | None = None


class TargetRunner(Protocol):
    async def run(
        self,
        tenant_id: str,
        target: Mapping[str, Any],
        inputs: Mapping[str, Any],
        parameters: Mapping[str, Any],
        cancel: asyncio.Event,
    ) -> TargetResult:
        """Run `target` (the ExperimentStarted `target` as a dict: `{"type": "agent_version",
        "agent_id", "version"}` or `{"type": "prompt_version", "prompt_id", "version"}`) once with
        `inputs`. When `cancel` is set, stop as soon as possible and return an error result. Report
        failures of the target as `error`; an exception is recorded as `target_error`."""
        ...


# --- dataset ---------------------------------------------------------------------------------------


class ExampleSource(Protocol):
    def iterate(
        self, tenant_id: str, dataset_id: str, upload_id: str
    ) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """Every `(index, data)` row of the pinned file `upload_id`, in file order. Raises
        `ExperimentRunError` (`dataset_changed` when the dataset now holds another file,
        `dataset_not_found`, `dataset_unavailable`)."""
        ...


# --- judge -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeRequest:
    """One grading call: `messages` are provider-neutral chat messages already filled in."""

    tenant_id: str
    model: str
    messages: Sequence[Mapping[str, Any]]
    parameters: Mapping[str, Any]
    cancel: asyncio.Event | None = None


@dataclass(frozen=True)
class JudgeReply:
    """The judge model's raw answer and what the call cost (None: unknown)."""

    text: str
    cost_usd: Decimal | None = None


class Judge(Protocol):
    async def __call__(self, request: JudgeRequest) -> JudgeReply:
        """Ask the judge model; raise on failure (the evaluator scores 0 with the reason)."""
        ...


class JudgePrompts(Protocol):
    async def messages(self, tenant_id: str, prompt_id: str, version: int) -> list[dict[str, Any]]:
        """The stored judge prompt as chat messages `[{role, content}]` (a text template becomes one
        user message); raise `ExperimentRunError` if it cannot be read."""
        ...


# --- event store -----------------------------------------------------------------------------------


class EventRecorder(Protocol):
    async def record(
        self,
        stream_id: str,
        expected_version: int,
        tenant_id: str,
        events: Sequence[BaseModel],
        causation_id: str | None,
        correlation_id: str | None = None,
    ) -> int:
        """Append `events` as one commit at `expected_version + 1 ...`; returns the stream's new
        version; raises `StreamConflict` when the stream moved past `expected_version`."""
        ...


class StreamReader(Protocol):
    async def read_stream(self, stream_id: str) -> list[EventEnvelope]:
        """Every event of the stream in stream_version order (empty for an unknown stream)."""
        ...


class OpenRunScanner(Protocol):
    async def open_runs(self) -> list[str]:
        """Stream ids of experiment runs that were started (have `runs.ExperimentRunStarted`) but
        not completed (no `runs.ExperimentRunCompleted`)."""
        ...


class RunRequestStore(Protocol):
    """The `registry.ExperimentStarted` envelopes this service accepted, by run stream id: the run's
    frozen definition, needed to resume it after a restart."""

    async def save(self, stream_id: str, envelope: EventEnvelope) -> None:
        """Keep the request (idempotent: the first saved one stays)."""
        ...

    async def get(self, stream_id: str) -> EventEnvelope | None: ...
