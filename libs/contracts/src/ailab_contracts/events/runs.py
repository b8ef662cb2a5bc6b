"""Events of agent runs and experiment execution results (run-executor, topic `ailab.runs.events`).

Experiment runs. The run-executor consumes `registry.ExperimentStarted` and, for that run, records
on the stream `experiment-run:{tenant}:{experiment_id}:{run_number}` (see `experiment_run_stream`):

1. `runs.ExperimentRunStarted` (stream_version 1) when it begins,
2. one `runs.ExperimentExampleScored` per example (stream_version 2, 3, ... in any example order),
3. `runs.ExperimentRunCompleted` last (status completed, failed or cancelled, with the summary).

The envelope's `tenant_id` is the experiment's tenant (also the Kafka key). Consumers are
idempotent: a result is keyed by (experiment_id, run_number, example_index), so a redelivered or
re-sent example is counted once, and the run status is ordered by stream_version and never moves
backwards (running -> completed|failed|cancelled), whatever order the events arrive in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

EXPERIMENT_RUN_STREAM_PREFIX = "experiment-run"


def experiment_run_stream(tenant_id: str, experiment_id: str, run_number: int) -> str:
    """`experiment-run:{tenant}:{experiment_id}:{run_number}`: the stream of one experiment run."""
    return f"{EXPERIMENT_RUN_STREAM_PREFIX}:{tenant_id}:{experiment_id}:{run_number}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


UsdAmount = Annotated[
    str,
    StringConstraints(pattern=r"^\d{1,15}(\.\d{1,15})?$"),
    Field(
        description="US dollars as a fixed-point decimal string (`format(Decimal, 'f')`), never a float.",
        examples=["0.00042"],
    ),
]
ExperimentRunStatus = Literal["completed", "failed", "cancelled"]

_MAX_DEPTH = 32


def _storable_problem(value: Any, path: str, depth: int = 0) -> str | None:
    """Why a JSON value could not be stored in a document store (MongoDB keys, 64-bit integers,
    finite numbers), or None."""
    if depth > _MAX_DEPTH:
        return f"{path}: nests deeper than {_MAX_DEPTH} levels"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
                return f"{path}: key {key!r} must be non-empty and hold no '$' prefix, '.' or NUL"
            if problem := _storable_problem(item, f"{path}.{key}", depth + 1):
                return problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if problem := _storable_problem(item, f"{path}[{i}]", depth + 1):
                return problem
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            return f"{path}: integers must fit in 64 bits"
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{path}: NaN and Infinity are not JSON numbers"
    else:
        return f"{path}: unsupported value of type {type(value).__name__}"
    return None


class RunError(_Model):
    code: str = Field(
        min_length=1, max_length=100, description="Machine-readable reason.", examples=["provider_timeout"]
    )
    message: str = Field(max_length=4000, description="What happened, for people.", examples=["timed out"])


class EvaluatorScore(_Model):
    evaluator: str = Field(
        description="Name of the evaluator in the experiment definition.", examples=["exact"]
    )
    score: float = Field(
        ge=0, le=1, allow_inf_nan=False, description="0 (worst) .. 1 (best).", examples=[1.0]
    )
    passed: bool = Field(description="Whether the example passes this evaluator.", examples=[True])
    detail: str | None = Field(
        default=None, max_length=4000, description="Why (judge rationale, mismatch).", examples=["equal"]
    )


class ExperimentRunStarted(_Model):
    """The run-executor began the run (stream `experiment-run:{tenant}:{experiment_id}:{run_number}`,
    stream_version 1)."""

    experiment_id: str = Field(examples=["exp_0192f3a4b5c6d1e2f3"])
    run_number: int = Field(ge=1, examples=[1])
    started_at: AwareDatetime = Field(description="When execution began (UTC).")
    example_count: int = Field(ge=0, description="Examples it will evaluate (the pinned file's rows).")


class ExperimentExampleScored(_Model):
    """One example was run and scored, or failed (`error` set). Sent once per example; a re-send or
    redelivery is harmless (the key is experiment_id + run_number + example_index). Stream
    `experiment-run:{tenant}:{experiment_id}:{run_number}`."""

    experiment_id: str = Field(examples=["exp_0192f3a4b5c6d1e2f3"])
    run_number: int = Field(ge=1, examples=[1])
    example_index: int = Field(ge=0, description="Row of the pinned dataset file, from 0.", examples=[0])
    run_id: str | None = Field(
        default=None,
        description="The agent/prompt run that produced the output (null if it never started).",
        examples=["run_0192f3a4b5c6d1e2f3"],
    )
    output: Any = Field(
        default=None,
        description="The target's output: any JSON value that a document store can keep "
        "(object keys non-empty, without a `$` prefix or `.`; finite numbers, 64-bit integers).",
        examples=["billing"],
    )
    scores: list[EvaluatorScore] = Field(
        default_factory=list, max_length=20, description="One per evaluator; empty when `error` is set."
    )
    latency_ms: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Target run time.", examples=[812.0]
    )
    tokens_in: int = Field(default=0, ge=0, description="Prompt tokens of the target run.", examples=[120])
    tokens_out: int = Field(default=0, ge=0, description="Completion tokens of the target run.", examples=[8])
    cost_usd: UsdAmount | None = Field(default=None, description="Cost of the target run (and judges).")
    error: RunError | None = Field(default=None, description="Why the example could not be scored.")

    @field_validator("output")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if problem := _storable_problem(value, "output"):
            raise ValueError(problem)
        return value


class EvaluatorSummary(_Model):
    evaluator: str = Field(examples=["exact"])
    pass_rate: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="Passed / scored examples."
    )
    mean_score: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)


class ExperimentRunSummary(_Model):
    """Aggregates over every example of the run (rates and means over scored examples; null when
    none was scored)."""

    examples_total: int = Field(ge=0, examples=[50])
    examples_scored: int = Field(ge=0, description="Examples with scores.", examples=[49])
    examples_failed: int = Field(ge=0, description="Examples with an error.", examples=[1])
    pass_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share of scored examples that passed every evaluator.",
        examples=[0.82],
    )
    mean_score: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="Mean of all scores.", examples=[0.87]
    )
    evaluators: list[EvaluatorSummary] = Field(default_factory=list, description="Per evaluator.")
    latency_p50_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False, examples=[640.0])
    latency_p95_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False, examples=[1900.0])
    latency_p99_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False, examples=[2400.0])
    cost_total_usd: UsdAmount | None = Field(default=None, examples=["0.0213"])
    cost_p50_usd: UsdAmount | None = Field(default=None, examples=["0.0004"])
    cost_p95_usd: UsdAmount | None = Field(default=None, examples=["0.0009"])


class ExperimentRunCompleted(_Model):
    """The run ended: `completed` (every example reported), `failed` (the run could not go on,
    `error` says why) or `cancelled`. Last event of the stream
    `experiment-run:{tenant}:{experiment_id}:{run_number}`."""

    experiment_id: str = Field(examples=["exp_0192f3a4b5c6d1e2f3"])
    run_number: int = Field(ge=1, examples=[1])
    status: ExperimentRunStatus = Field(examples=["completed"])
    summary: ExperimentRunSummary
    error: RunError | None = Field(default=None, description="Why the run failed or was cancelled.")
    completed_at: AwareDatetime = Field(description="When the run ended (UTC).")


# --- agent runs -------------------------------------------------------------------------------------
#
# One stream per run, `run:{tenant}:{run_id}` (see `run_stream`): `runs.RunQueued` (stream_version 1,
# recorded when the API accepts the run), `runs.RunStarted` when the executor begins, then exactly one
# terminal event: `runs.RunSucceeded`, `runs.RunFailed`, `runs.RunCancelled` or `runs.RunTimedOut`
# (a run cancelled or failed while still queued has no RunStarted). `runs.RunDeleted` may follow a
# terminal event. Status moves only forward: queued -> running -> succeeded | failed | cancelled |
# timed_out, and queued -> cancelled | failed.

RUN_STREAM_PREFIX = "run"

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})


def run_stream(tenant_id: str, run_id: str) -> str:
    """`run:{tenant}:{run_id}`: the stream of one agent run."""
    return f"{RUN_STREAM_PREFIX}:{tenant_id}:{run_id}"


def _storable_field(value: Any, name: str) -> Any:
    if problem := _storable_problem(value, name):
        raise ValueError(problem)
    return value


class RunTotals(_Model):
    """What a run consumed, summed over every provider call it made (failed and cancelled calls
    included, with the tokens the provider reported before the failure)."""

    tokens_in: int = Field(default=0, ge=0, description="Prompt tokens of every call.", examples=[120])
    tokens_out: int = Field(default=0, ge=0, description="Completion tokens of every call.", examples=[48])
    cost_usd: UsdAmount = Field(
        default="0",
        description="Sum of the cost estimates of the priced calls. When `unpriced_calls` > 0 this is a "
        "lower bound: those calls used models without a price (never counted as $0).",
    )
    unpriced_calls: int = Field(
        default=0, ge=0, description="Calls whose model has no price in the price table.", examples=[0]
    )
    provider_calls: int = Field(default=0, ge=0, description="LLM provider calls made.", examples=[2])
    tool_calls: int = Field(default=0, ge=0, description="Tool invocations made.", examples=[1])
    steps: int = Field(default=0, ge=0, description="Node executions.", examples=[3])
    latency_ms: float = Field(
        default=0, ge=0, allow_inf_nan=False, description="Wall time from start to end.", examples=[812.5]
    )


class RunErrorInfo(_Model):
    """Why a run did not succeed."""

    code: str = Field(
        min_length=1,
        max_length=100,
        description="Machine-readable reason (`step_limit_exceeded`, `provider_timeout`, "
        "`tool_host_not_allowed`, `executor_restarted` ...).",
        examples=["step_limit_exceeded"],
    )
    message: str = Field(max_length=4000, description="What happened, for people.", examples=["100 steps"])
    node_id: str | None = Field(
        default=None, max_length=128, description="Node where it happened, if any.", examples=["draft"]
    )


class RunQueued(_Model):
    """The API accepted a run of an agent version (stream `run:{tenant}:{run_id}`, version 1)."""

    run_id: str = Field(description="Run id, time-ordered.", examples=["run_0192f3a4b5c6d1e2f3"])
    agent_id: str = Field(examples=["agt_0192f3a4b5c6d1e2f3"])
    agent_version: int = Field(ge=1, description="Agent version the run executes.", examples=[3])
    project_id: str | None = Field(default=None, description="The agent's project.", examples=["prj_01"])
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Inputs of the run (the flow's `inputs`).", examples=[{"q": "hi"}]
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Caller's free-form JSON object.")
    timeout_s: float = Field(
        gt=0, allow_inf_nan=False, description="Wall-clock limit of the execution.", examples=[120.0]
    )
    max_steps: int = Field(ge=1, description="Most node executions allowed.", examples=[100])
    streamed: bool = Field(default=False, description="The caller asked for server-sent events.")
    trace_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="W3C trace id of the run's spans.",
        examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
    )
    request_id: str | None = Field(default=None, max_length=200, description="Request that started it.")
    created_by: str = Field(description="Principal that started the run.", examples=["usr_01"])
    queued_at: AwareDatetime = Field(description="When it was accepted (UTC).")

    @field_validator("inputs", "metadata")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        return _storable_field(value, str(info.field_name))


class RunStarted(_Model):
    """The executor began executing the run (it had a free slot of its tenant's concurrency)."""

    run_id: str = Field(examples=["run_0192f3a4b5c6d1e2f3"])
    started_at: AwareDatetime = Field(description="When execution began (UTC).")


class RunSucceeded(_Model):
    """The flow reached its end; `output` is what the run returns."""

    run_id: str = Field(examples=["run_0192f3a4b5c6d1e2f3"])
    output: Any = Field(
        default=None,
        description="The run's output: any JSON value a document store can keep.",
        examples=[{"answer": "echo: hi"}],
    )
    totals: RunTotals
    finished_at: AwareDatetime = Field(description="When the run ended (UTC).")

    @field_validator("output")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return _storable_field(value, "output")


class RunFailed(_Model):
    """The run stopped on an error (a node failed, the step limit, or the executor went away)."""

    run_id: str = Field(examples=["run_0192f3a4b5c6d1e2f3"])
    error: RunErrorInfo
    totals: RunTotals
    finished_at: AwareDatetime = Field(description="When the run ended (UTC).")


class RunCancelled(_Model):
    """Someone cancelled the run; provider calls in flight were stopped (their spent tokens are in
    `totals`)."""

    run_id: str = Field(examples=["run_0192f3a4b5c6d1e2f3"])
    cancelled_by: str = Field(description="Principal that cancelled it.", examples=["usr_01"])
    reason: str | None = Field(default=None, max_length=1000, description="Why, if given.")
    totals: RunTotals
    finished_at: AwareDatetime = Field(description="When the run ended (UTC).")


class RunTimedOut(_Model):
    """The run exceeded its wall-clock limit (`timeout_s`)."""

    run_id: str = Field(examples=["run_0192f3a4b5c6d1e2f3"])
    timeout_s: float = Field(gt=0, allow_inf_nan=False, examples=[120.0])
    error: RunErrorInfo
    totals: RunTotals
    finished_at: AwareDatetime = Field(description="When the run ended (UTC).")


class RunDeleted(_Model):
    """A finished run was deleted: it disappears from every read (its usage stays billed)."""

    run_id: str = Field(examples=["run_0192f3a4b5c6d1e2f3"])
    deleted_by: str = Field(examples=["usr_01"])


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("runs.ExperimentRunStarted", 1, ExperimentRunStarted),
    ("runs.ExperimentExampleScored", 1, ExperimentExampleScored),
    ("runs.ExperimentRunCompleted", 1, ExperimentRunCompleted),
    ("runs.RunQueued", 1, RunQueued),
    ("runs.RunStarted", 1, RunStarted),
    ("runs.RunSucceeded", 1, RunSucceeded),
    ("runs.RunFailed", 1, RunFailed),
    ("runs.RunCancelled", 1, RunCancelled),
    ("runs.RunTimedOut", 1, RunTimedOut),
    ("runs.RunDeleted", 1, RunDeleted),
]

# (event_type, from_version, function turning a v(from_version) payload into v(from_version + 1))
UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
