"""Request and response bodies of the experiments API: one schema per purpose.

`target` and `evaluators` arrive as plain JSON so that the domain validates them with the contract
models and answers 422 `invalid_experiment` naming the evaluator index and field; their documented
schema is the contract's (inlined below)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema

from ailab_contracts.events.experiments import (
    EVALUATOR_TYPES,
    EvaluatorSpec,
    ExampleField,
    ExperimentTarget,
)
from ailab_contracts.events.registry import EntityStatus
from ailab_contracts.events.runs import EvaluatorScore, ExperimentRunSummary, RunError

from ..entrypoints.schemas import (
    METADATA_DOC,
    TAGS_DOC,
    UNCHANGED_DOC,
    Description,
    EntityId,
    Name,
    StrictBody,
    Tag,
)
from .model import Experiment, RunStatus, RunStatusName, config_path


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` substituted in place (OpenAPI components cannot see them)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            out = {k: walk(v) for k, v in node.items()}
            if isinstance(out.get("discriminator"), dict):
                out["discriminator"] = {"propertyName": out["discriminator"]["propertyName"]}
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


_TARGET_SCHEMA = _inline(TypeAdapter(ExperimentTarget).json_schema())
_EVALUATORS_SCHEMA = _inline(TypeAdapter(list[EvaluatorSpec]).json_schema())
_EVALUATORS_SCHEMA.update(minItems=1, maxItems=20)

TargetIn = Annotated[dict[str, Any], WithJsonSchema(_TARGET_SCHEMA)]
EvaluatorsIn = Annotated[list[Any], WithJsonSchema(_EVALUATORS_SCHEMA)]

_TARGET = (
    '`{"type": "agent_version", "agent_id", "version"}` or '
    '`{"type": "prompt_version", "prompt_id", "version"}`; it must exist in the tenant '
    "(422 `invalid_reference`)."
)
_EVALUATORS = (
    "1 to 20 `{name, type, config}`; types: "
    + ", ".join(f"`{t}`" for t in EVALUATOR_TYPES)
    + ". Each config is validated (422 `invalid_experiment` names the evaluator index and field); "
    "regex patterns must compile; an `llm_judge` stored prompt must exist."
)
_PARAMETERS = "Run settings the run-executor applies (e.g. model overrides). " + METADATA_DOC

_EXAMPLE = {
    "name": "Triage accuracy",
    "description": "Nightly check of the triage agent",
    "tags": ["nightly"],
    "target": {"type": "agent_version", "agent_id": "agt_0192f3a4b5c6d1e2f3", "version": 3},
    "dataset_id": "dst_0192f3a4b5c6d1e2f3",
    "evaluators": [
        {"name": "exact", "type": "exact_match", "config": {"case_sensitive": False}},
        {"name": "label", "type": "regex", "config": {"pattern": "^(billing|tech|other)$"}},
        {
            "name": "judge",
            "type": "llm_judge",
            "config": {"prompt": "Is {{output}} a good triage of {{input}}?", "model": "gpt-4o-mini"},
        },
    ],
    "parameters": {"temperature": 0},
    "concurrency": 8,
    "expected_output_field": "expected",
}


class ExperimentCreate(StrictBody):
    """A new experiment: a target evaluated on a dataset by a list of evaluators."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    name: Name = Field(description="Display name.", examples=["Triage accuracy"])
    description: Description | None = Field(default=None, description="Free text shown to people.")
    tags: list[Tag] = Field(default_factory=list, max_length=50, description=TAGS_DOC, examples=[["nightly"]])
    metadata: dict[str, Any] = Field(default_factory=dict, description=METADATA_DOC)
    target: TargetIn = Field(description=_TARGET)
    dataset_id: EntityId = Field(
        description="Dataset of the same tenant (422 `invalid_reference` if unknown).",
        examples=["dst_0192f3a4b5c6d1e2f3"],
    )
    evaluators: EvaluatorsIn = Field(description=_EVALUATORS)
    parameters: dict[str, Any] = Field(
        default_factory=dict, description=_PARAMETERS, examples=[{"temperature": 0}]
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Examples evaluated at once.", examples=[8])
    expected_output_field: ExampleField = Field(
        default="expected",
        description="Example field holding the expected answer (evaluators without a `field` use it).",
    )


class ExperimentUpdate(StrictBody):
    """Fields to change; omitted fields keep their value. Runs already started keep the definition
    they froze."""

    name: Name | None = Field(default=None, description="Display name." + UNCHANGED_DOC)
    description: Description | None = Field(default=None, description="Free text." + UNCHANGED_DOC)
    tags: list[Tag] | None = Field(default=None, max_length=50, description=TAGS_DOC + " Replaces the list.")
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DOC + " Replaces the object.")
    status: EntityStatus | None = Field(
        default=None,
        description="Lifecycle status; an archived experiment cannot start.",
        examples=["archived"],
    )
    target: TargetIn | None = Field(default=None, description=_TARGET + UNCHANGED_DOC)
    dataset_id: EntityId | None = Field(
        default=None, description="Dataset of the same tenant." + UNCHANGED_DOC
    )
    evaluators: EvaluatorsIn | None = Field(default=None, description=_EVALUATORS + " Replaces the list.")
    parameters: dict[str, Any] | None = Field(default=None, description=_PARAMETERS + " Replaces the object.")
    concurrency: int | None = Field(default=None, ge=1, le=64, description="Examples evaluated at once.")
    expected_output_field: ExampleField | None = Field(
        default=None, description="Example field." + UNCHANGED_DOC
    )


class ExperimentOut(BaseModel):
    """An experiment definition."""

    id: str = Field(description="Identifier, time-ordered.", examples=["exp_0192f3a4b5c6d1e2f3a4b5"])
    tenant_id: str = Field(examples=["demo"])
    name: str = Field(examples=["Triage accuracy"])
    description: str | None = None
    status: EntityStatus = Field(examples=["active"])
    tags: list[str] = Field(examples=[["nightly"]])
    metadata: dict[str, Any]
    target: ExperimentTarget
    dataset_id: str = Field(examples=["dst_0192f3a4b5c6d1e2f3"])
    evaluators: list[EvaluatorSpec]
    parameters: dict[str, Any] = Field(examples=[{"temperature": 0}])
    concurrency: int = Field(examples=[4])
    expected_output_field: str = Field(examples=["expected"])
    last_run_number: int | None = Field(
        default=None, description="Number of the latest run; null before the first start.", examples=[2]
    )
    config_path: str = Field(
        description="Where the definition lives in the artifact layout.",
        examples=["tenants/demo/experiments/exp_0192f3a4b5c6d1e2f3a4b5/config.json"],
    )
    created_at: datetime
    updated_at: datetime
    created_by: str = Field(examples=["usr_01"])
    updated_by: str = Field(examples=["usr_01"])
    version: int = Field(
        description="Version of the experiment's event stream (starting a run moves it too); the ETag is "
        '`"<version>"`.',
        examples=[1],
    )

    @classmethod
    def of(cls, experiment: Experiment) -> ExperimentOut:
        return cls.model_validate(
            {**asdict(experiment), "config_path": config_path(experiment.tenant_id, experiment.id)}
        )


class RunStatusOut(BaseModel):
    """Status of an experiment run: `pending` from the start request until the run-executor reports,
    then `running`, then `completed`, `failed` or `cancelled` with the summary."""

    experiment_id: str = Field(examples=["exp_0192f3a4b5c6d1e2f3a4b5"])
    run_number: int | None = Field(description="null before the first start.", examples=[1])
    status: RunStatusName = Field(examples=["running"])
    examples_total: int | None = Field(description="Examples of the pinned dataset file.", examples=[50])
    examples_scored: int = Field(description="Examples reported with scores so far.", examples=[20])
    examples_failed: int = Field(description="Examples reported with an error so far.", examples=[1])
    requested_at: datetime | None = Field(description="When the run was started.")
    requested_by: str | None = Field(description="Who started it.", examples=["usr_01"])
    started_at: datetime | None = Field(description="When the run-executor began it.")
    completed_at: datetime | None = Field(description="When it ended.")
    summary: ExperimentRunSummary | None = Field(description="Aggregates, once the run ended.")
    error: RunError | None = Field(description="Why the run failed or was cancelled.")

    @classmethod
    def of(cls, status: RunStatus) -> RunStatusOut:
        return cls.model_validate(asdict(status))


class ExampleResultOut(BaseModel):
    """The output and scores of one dataset example."""

    example_index: int = Field(description="Row of the pinned dataset file, from 0.", examples=[0])
    run_id: str | None = Field(description="The agent/prompt run that produced the output.")
    output: Any = Field(description="The target's output (any JSON).", examples=["billing"])
    scores: list[EvaluatorScore]
    latency_ms: float | None = Field(examples=[812.0])
    tokens_in: int = Field(examples=[120])
    tokens_out: int = Field(examples=[8])
    cost_usd: str | None = Field(description="Decimal string.", examples=["0.00042"])
    error: RunError | None = None
    scored_at: datetime


class ExperimentResultsOut(BaseModel):
    """One page of a run's per-example results in `example_index` order, with the run's status and
    (once it ended) its summary."""

    experiment_id: str
    run_number: int | None = Field(description="The run shown; null before the first start.", examples=[1])
    status: RunStatusName = Field(examples=["completed"])
    examples_total: int | None = Field(examples=[50])
    examples_scored: int = Field(examples=[49])
    examples_failed: int = Field(examples=[1])
    summary: ExperimentRunSummary | None = None
    items: list[ExampleResultOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )
