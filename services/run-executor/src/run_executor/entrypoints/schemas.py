"""Request and response bodies of the runs API: one schema per purpose."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ailab_contracts.events.runs import RunStatus, RunTotals

from ..domain.model import Run

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=128)]

_JSON_OBJECT = (
    "JSON object. Keys may not be empty, start with `$` or contain `.`; numbers must be finite and "
    "integers fit in 64 bits."
)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(_In):
    """Start a run of an agent version."""

    agent_id: EntityId = Field(description="Agent to run.", examples=["agt_0192f3a4b5c6d1e2f3"])
    version: int | None = Field(
        default=None, ge=1, le=1_000_000_000, description="Agent version; default its latest.", examples=[3]
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Inputs of the run: the flow reads them as `inputs.<name>`. " + _JSON_OBJECT,
        examples=[{"message": "Where is my refund?"}],
    )
    stream: bool = Field(
        default=False,
        description="Answer with a server-sent-event stream of the run's progress instead of JSON "
        "(also with `Accept: text/event-stream`).",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form. " + _JSON_OBJECT)
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Wall-clock limit of the execution; default the version's `config.timeout_s`, else 120.",
        examples=[60],
    )


class RunUpdate(_In):
    """The one status change a caller can ask for."""

    status: Literal["cancelled"] = Field(description="`cancelled` stops the run.", examples=["cancelled"])
    reason: str | None = Field(default=None, max_length=1000, description="Why, kept on the run.")


class RunErrorOut(BaseModel):
    code: str = Field(examples=["step_limit_exceeded"])
    message: str = Field(examples=["the run reached its step limit of 100 node executions"])
    node_id: str | None = Field(default=None, examples=["draft"])


class RunOut(BaseModel):
    """A run: its status, inputs and output, error, and what it consumed."""

    id: str = Field(description="Run id, time-ordered.", examples=["run_0192f3a4b5c6d1e2f3"])
    tenant_id: str = Field(examples=["demo"])
    agent_id: str = Field(examples=["agt_0192f3a4b5c6d1e2f3"])
    agent_version: int = Field(examples=[3])
    project_id: str | None = None
    status: RunStatus = Field(
        description="queued -> running -> succeeded | failed | cancelled | timed_out.", examples=["succeeded"]
    )
    inputs: dict[str, Any] = Field(examples=[{"message": "hi"}])
    output: Any = Field(default=None, description="What the run returned (succeeded runs).")
    error: RunErrorOut | None = Field(default=None, description="Why it failed, timed out or was cancelled.")
    metadata: dict[str, Any]
    streamed: bool = Field(description="Started with `stream: true`.")
    timeout_s: float = Field(examples=[120.0])
    max_steps: int = Field(examples=[100])
    trace_id: str = Field(description="Trace id of the run's spans (32 hex).")
    totals: RunTotals = Field(description="Tokens, cost, calls, steps and latency (set when it finishes).")
    created_by: str = Field(examples=["usr_01"])
    created_at: datetime = Field(description="When it was queued (UTC).")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str | None = None
    version: int = Field(description='Version of the run stream; the ETag is `"<version>"`.', examples=[3])

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls(
            id=run.id,
            tenant_id=run.tenant_id,
            agent_id=run.agent_id,
            agent_version=run.agent_version,
            project_id=run.project_id,
            status=run.status,  # type: ignore[arg-type]
            inputs=run.inputs,
            output=run.output,
            error=RunErrorOut(**run.error) if run.error else None,
            metadata=run.metadata,
            streamed=run.streamed,
            timeout_s=run.timeout_s,
            max_steps=run.max_steps,
            trace_id=run.trace_id,
            totals=RunTotals(**run.totals),
            created_by=run.created_by,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            cancelled_by=run.cancelled_by,
            cancel_reason=run.cancel_reason,
            version=run.version,
        )


class RunLogOut(BaseModel):
    seq: int = Field(description="Order within the run, from 1.", examples=[1])
    ts: datetime = Field(description="When it was written (UTC).")
    level: str = Field(examples=["info"])
    node_id: str | None = Field(default=None, examples=["draft"])
    message: str = Field(examples=["node draft (llm) started"])
    data: Any = Field(default=None, description="Structured details.")

    @classmethod
    def of(cls, doc: dict[str, Any]) -> RunLogOut:
        return cls(**{k: doc.get(k) for k in ("seq", "ts", "level", "node_id", "message", "data")})


class LogPage(BaseModel):
    items: list[RunLogOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


class SpanError(BaseModel):
    type: str = Field(examples=["provider_timeout"])
    message: str


class SpanEvent(BaseModel):
    name: str = Field(examples=["first_token"])
    time: datetime
    attributes: dict[str, Any] = Field(default_factory=dict)


class SpanOut(BaseModel):
    """One operation of the run (OpenTelemetry-compatible ids)."""

    trace_id: str = Field(description="32 hex characters.", examples=["4bf92f3577b34da6a3ce929d0e0e4736"])
    span_id: str = Field(description="16 hex characters.", examples=["00f067aa0ba902b7"])
    parent_span_id: str | None = Field(default=None, description="Null for the run's root span.")
    operation_name: str = Field(examples=["node.llm"])
    start_time: datetime
    end_time: datetime | None = None
    duration_ms: float | None = None
    status: Literal["ok", "error", "timeout"]
    error: SpanError | None = None
    attributes: dict[str, Any] = Field(
        description="tenant_id, user_id, agent_id, run_id, and where they apply provider, model, node_id, "
        "tokens_in, tokens_out, cost_usd ..."
    )
    tags: dict[str, str] = Field(default_factory=dict)
    events: list[SpanEvent] = Field(default_factory=list)
    input: Any = Field(default=None, description="What the operation received (long values truncated).")
    output: Any = Field(default=None, description="What it produced (long values truncated).")
    children: list[SpanOut] = Field(default_factory=list, description="Child spans, by start time.")


class RunTrace(BaseModel):
    run_id: str
    trace_id: str
    span_count: int = Field(description="Spans stored for the run.")
    spans: list[SpanOut] = Field(
        description="The span tree: the run's root span (`agent.run`) with node spans below it, and provider "
        "(`llm.call`) and tool (`tool.call`) spans below their node. While the run is still running its root "
        "span is not stored yet, so its node spans are listed at the top."
    )
