"""Events of experiment definitions and runs requested (agent-registry, topic `ailab.registry.events`).

An experiment evaluates a target (an agent version or a prompt version) on every example of a
dataset with a list of evaluators. Its events live on the stream `experiment:{tenant}:{experiment_id}`.
`registry.ExperimentStarted` freezes the definition and pins the dataset file the run-executor must
use; the executor reports progress and results on `ailab.runs.events` (see `events/runs.py`).

The target and evaluator models below are the one definition of what a valid experiment is: the
registry validates requests with them and the run-executor parses the frozen definition with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from .registry import EntityStatus

EXPERIMENT_STREAM_PREFIX = "experiment"


def experiment_stream(tenant_id: str, experiment_id: str) -> str:
    """Stream of an experiment's definition and start requests: `experiment:{tenant}:{experiment_id}`."""
    return f"{EXPERIMENT_STREAM_PREFIX}:{tenant_id}:{experiment_id}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


EvaluatorName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"),
    Field(
        description="Unique within the experiment: letters, digits, `_` and `-`, at most 64 characters; "
        "scores and summaries refer to the evaluator by this name.",
        examples=["exact"],
    ),
]
ExampleField = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^.$][^.]*(\.[^.$][^.]*)*$"),
    Field(
        description="Field of a dataset example; `a.b` reaches into nested objects.",
        examples=["expected"],
    ),
]
RefId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


# --- targets -------------------------------------------------------------------------------------


class AgentVersionTarget(_Model):
    """Run every example through a published agent version."""

    type: Literal["agent_version"] = Field(description="Target kind.", examples=["agent_version"])
    agent_id: RefId = Field(description="Agent of the same tenant.", examples=["agt_0192f3a4b5c6d1e2f3"])
    version: int = Field(ge=1, le=1_000_000_000, description="Published version number.", examples=[3])


class PromptVersionTarget(_Model):
    """Render a prompt version with each example and send it to the model of the run parameters."""

    type: Literal["prompt_version"] = Field(description="Target kind.", examples=["prompt_version"])
    prompt_id: RefId = Field(description="Prompt of the same tenant.", examples=["pmt_0192f3a4b5c6d1e2f3"])
    version: int = Field(ge=1, le=1_000_000_000, description="Prompt version number.", examples=[2])


ExperimentTarget = Annotated[
    AgentVersionTarget | PromptVersionTarget,
    Field(discriminator="type", description="What the experiment evaluates."),
]


# --- evaluators ----------------------------------------------------------------------------------


class ExactMatchConfig(_Model):
    field: ExampleField | None = Field(
        default=None,
        description="Example field holding the expected answer; default: the experiment's "
        "`expected_output_field`.",
    )
    case_sensitive: bool = Field(default=True, description="Compare letters case-sensitively.")


class ContainsConfig(_Model):
    """Exactly one of `value` (a fixed substring) or `field` (an example field holding it)."""

    value: str | None = Field(
        default=None, min_length=1, max_length=10_000, description="Substring the output must contain."
    )
    field: ExampleField | None = Field(
        default=None, description="Example field holding the substring the output must contain."
    )
    case_sensitive: bool = Field(default=True, description="Compare letters case-sensitively.")

    @model_validator(mode="after")
    def _one_source(self) -> ContainsConfig:
        if (self.value is None) == (self.field is None):
            raise ValueError("give exactly one of `value` or `field`")
        return self


class RegexConfig(_Model):
    pattern: str = Field(
        min_length=1,
        max_length=2000,
        description="Python `re` pattern the output must match; compiled when the experiment is saved.",
        examples=[r"^(yes|no)$"],
    )
    ignore_case: bool = Field(default=False, description="Match case-insensitively.")
    full_match: bool = Field(
        default=False, description="The whole output must match (otherwise a match anywhere passes)."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        return pattern


class JsonValidConfig(_Model):
    required_keys: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=100,
        description="Top-level keys the output object must have (empty: any valid JSON passes).",
        examples=[["label", "confidence"]],
    )


class NumericToleranceConfig(_Model):
    """Passes when |output - expected| <= max(abs_tolerance, rel_tolerance * |expected|)."""

    field: ExampleField | None = Field(
        default=None,
        description="Example field holding the expected number; default: the experiment's "
        "`expected_output_field`.",
    )
    abs_tolerance: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="Absolute tolerance.", examples=[0.01]
    )
    rel_tolerance: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Relative tolerance (0.05 = 5 %).",
        examples=[0.05],
    )


class LlmJudgeConfig(_Model):
    """A model grades the output. The judge prompt is given inline (`prompt`) or as a stored prompt
    version (`prompt_id` + `prompt_version`), never both."""

    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=20_000,
        description="Judge prompt text; `{{input}}`, `{{output}}` and `{{expected}}` are filled in.",
    )
    prompt_id: RefId | None = Field(default=None, description="Stored judge prompt of the same tenant.")
    prompt_version: int | None = Field(default=None, ge=1, description="Version of `prompt_id`.")
    model: str = Field(min_length=1, max_length=200, description="Judge model.", examples=["gpt-4o-mini"])
    pass_threshold: float = Field(
        default=0.5, ge=0, le=1, allow_inf_nan=False, description="Score (0..1) at or above which it passes."
    )
    rubric: str | None = Field(
        default=None, max_length=20_000, description="Grading criteria shown to the judge."
    )

    @model_validator(mode="after")
    def _one_prompt(self) -> LlmJudgeConfig:
        stored = self.prompt_id is not None or self.prompt_version is not None
        if stored and (self.prompt_id is None or self.prompt_version is None):
            raise ValueError("`prompt_id` and `prompt_version` go together")
        if stored == (self.prompt is not None):
            raise ValueError("give exactly one of `prompt` or `prompt_id` + `prompt_version`")
        return self


class ExactMatchEvaluator(_Model):
    """Output equals the expected answer."""

    name: EvaluatorName
    type: Literal["exact_match"]
    config: ExactMatchConfig = Field(default_factory=ExactMatchConfig)


class ContainsEvaluator(_Model):
    """Output contains a substring."""

    name: EvaluatorName
    type: Literal["contains"]
    config: ContainsConfig


class RegexEvaluator(_Model):
    """Output matches a regular expression."""

    name: EvaluatorName
    type: Literal["regex"]
    config: RegexConfig


class JsonValidEvaluator(_Model):
    """Output parses as JSON (optionally an object with the required keys)."""

    name: EvaluatorName
    type: Literal["json_valid"]
    config: JsonValidConfig = Field(default_factory=JsonValidConfig)


class NumericToleranceEvaluator(_Model):
    """Output is a number close enough to the expected one."""

    name: EvaluatorName
    type: Literal["numeric_tolerance"]
    config: NumericToleranceConfig = Field(default_factory=NumericToleranceConfig)


class LlmJudgeEvaluator(_Model):
    """A model scores the output from 0 to 1."""

    name: EvaluatorName
    type: Literal["llm_judge"]
    config: LlmJudgeConfig


EvaluatorSpec = Annotated[
    ExactMatchEvaluator
    | ContainsEvaluator
    | RegexEvaluator
    | JsonValidEvaluator
    | NumericToleranceEvaluator
    | LlmJudgeEvaluator,
    Field(discriminator="type"),
]
EVALUATOR_TYPES: tuple[str, ...] = (
    "exact_match",
    "contains",
    "regex",
    "json_valid",
    "numeric_tolerance",
    "llm_judge",
)

_EVALUATORS = "Scoring rules, applied to every example; names are unique within the experiment."
_PARAMETERS = "Free-form run settings (e.g. model overrides, temperature) the run-executor applies."
_CONCURRENCY = "How many examples the run-executor evaluates at once."
_EXPECTED = "Example field holding the expected answer (default for evaluators without a `field`)."


# --- events ----------------------------------------------------------------------------------------


class ExperimentCreated(_Model):
    experiment_id: str = Field(examples=["exp_0192f3a4b5c6d1e2f3"])
    name: str = Field(examples=["Triage accuracy"])
    description: str | None = None
    tags: list[str] = Field(default_factory=list, examples=[["nightly"]])
    metadata: dict[str, Any] = Field(default_factory=dict)
    target: ExperimentTarget
    dataset_id: str = Field(description="Dataset of the same tenant.", examples=["dst_0192f3a4b5c6d1e2f3"])
    evaluators: list[EvaluatorSpec] = Field(min_length=1, max_length=20, description=_EVALUATORS)
    parameters: dict[str, Any] = Field(default_factory=dict, description=_PARAMETERS)
    concurrency: int = Field(default=4, ge=1, le=64, description=_CONCURRENCY)
    expected_output_field: ExampleField = Field(default="expected", description=_EXPECTED)
    created_by: str = Field(examples=["usr_01"])


class ExperimentUpdated(_Model):
    """Only the fields that changed are set (null = unchanged)."""

    experiment_id: str
    name: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    status: EntityStatus | None = None
    target: ExperimentTarget | None = None
    dataset_id: str | None = None
    evaluators: list[EvaluatorSpec] | None = Field(default=None, min_length=1, max_length=20)
    parameters: dict[str, Any] | None = None
    concurrency: int | None = Field(default=None, ge=1, le=64)
    expected_output_field: ExampleField | None = None
    updated_by: str


class ExperimentStarted(_Model):
    """A run of the experiment was requested: the run-executor evaluates exactly this frozen
    definition on exactly the pinned dataset file, and reports on `ailab.runs.events` on the stream
    `experiment-run:{tenant}:{experiment_id}:{run_number}` (see `events/runs.py`)."""

    experiment_id: str = Field(examples=["exp_0192f3a4b5c6d1e2f3"])
    run_number: int = Field(ge=1, description="1, 2, 3 ... per experiment.", examples=[1])
    target: ExperimentTarget
    evaluators: list[EvaluatorSpec] = Field(min_length=1, max_length=20, description=_EVALUATORS)
    parameters: dict[str, Any] = Field(default_factory=dict, description=_PARAMETERS)
    concurrency: int = Field(ge=1, le=64, description=_CONCURRENCY, examples=[4])
    expected_output_field: ExampleField = Field(description=_EXPECTED)
    dataset_id: str = Field(examples=["dst_0192f3a4b5c6d1e2f3"])
    upload_id: str = Field(
        description="The dataset file to read (the dataset's current upload when the run started).",
        examples=["upl_0192f3a4b5c6d1e2f3"],
    )
    content_sha256: str | None = Field(
        default=None,
        description="SHA-256 of that file; the executor refuses a file with another digest.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    example_count: int = Field(ge=0, description="Rows in that file (examples 0 .. count-1).", examples=[50])
    requested_by: str = Field(description="Principal that started the run.", examples=["usr_01"])
    supersedes_run_number: int | None = Field(
        default=None,
        description="A run that was still pending or running when this one was forced "
        "(`?force=true`); the executor should cancel it.",
    )


EVENTS: list[tuple[str, int, type[BaseModel]]] = [
    ("registry.ExperimentCreated", 1, ExperimentCreated),
    ("registry.ExperimentUpdated", 1, ExperimentUpdated),
    ("registry.ExperimentStarted", 1, ExperimentStarted),
]

# (event_type, from_version, function turning a v(from_version) payload into v(from_version + 1))
UPCASTERS: list[tuple[str, int, Callable[[dict[str, Any]], dict[str, Any]]]] = []
