"""Experiment definitions: every evaluator config and target is validated, and a bad one is a 422
`invalid_experiment` naming the evaluator index and the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent_registry.domain.errors import InvalidValue
from agent_registry.experiments.commands import CreateExperiment
from agent_registry.experiments.errors import InvalidExperiment
from agent_registry.experiments.model import Reference, decide_create, references_of
from ailab_contracts.events.runs import ExperimentExampleScored, ExperimentRunSummary

pytestmark = pytest.mark.unit

TARGET = {"type": "agent_version", "agent_id": "agt_1", "version": 2}
ALL_TYPES: list[dict[str, Any]] = [
    {"name": "exact", "type": "exact_match"},
    {"name": "has-refund", "type": "contains", "config": {"value": "refund"}},
    {"name": "label", "type": "regex", "config": {"pattern": r"^(billing|tech)$", "full_match": True}},
    {"name": "json", "type": "json_valid", "config": {"required_keys": ["label"]}},
    {"name": "num", "type": "numeric_tolerance", "config": {"field": "answer.value", "rel_tolerance": 0.05}},
    {
        "name": "judge",
        "type": "llm_judge",
        "config": {"prompt_id": "pmt_1", "prompt_version": 3, "model": "gpt-4o-mini", "pass_threshold": 0.7},
    },
]


def create(**overrides: Any) -> CreateExperiment:
    fields: dict[str, Any] = {
        "tenant_id": "t1",
        "actor": "u1",
        "name": "E",
        "target": TARGET,
        "dataset_id": "dst_1",
        "evaluators": ALL_TYPES,
        **overrides,
    }
    return CreateExperiment(**fields)


def problems_of(cmd: CreateExperiment) -> list[dict[str, Any]]:
    with pytest.raises(InvalidExperiment) as caught:
        decide_create("exp_1", cmd)
    assert caught.value.code == "invalid_experiment"
    return caught.value.problems


def test_every_evaluator_type_validates_and_gets_its_defaults() -> None:
    event = decide_create("exp_1", create(tags=[" a ", "a", ""], parameters={"model": "gpt-4o"}))
    assert [e.type for e in event.evaluators] == [
        "exact_match",
        "contains",
        "regex",
        "json_valid",
        "numeric_tolerance",
        "llm_judge",
    ]
    dumped = event.model_dump(mode="json")
    assert dumped["evaluators"][0]["config"] == {"field": None, "case_sensitive": True}
    assert dumped["evaluators"][4]["config"]["abs_tolerance"] == 0.0
    assert (event.concurrency, event.expected_output_field, event.tags) == (4, "expected", ["a"])


@pytest.mark.parametrize(
    ("evaluator", "loc", "needle"),
    [
        (
            {"name": "re", "type": "regex", "config": {"pattern": "(unclosed"}},
            ["config", "pattern"],
            "compile",
        ),
        ({"name": "x", "type": "levenshtein"}, [], "levenshtein"),
        ({"name": "x", "config": {}}, [], "type"),
        (
            {"name": "c", "type": "contains", "config": {"value": "a", "field": "b"}},
            ["config"],
            "exactly one",
        ),
        ({"name": "c", "type": "contains", "config": {}}, ["config"], "exactly one"),
        (
            {"name": "n", "type": "numeric_tolerance", "config": {"abs_tolerance": -1}},
            ["config", "abs_tolerance"],
            "greater than or equal",
        ),
        ({"name": "j", "type": "llm_judge", "config": {"prompt": "p"}}, ["config", "model"], "required"),
        (
            {"name": "j", "type": "llm_judge", "config": {"prompt": "p", "prompt_id": "pmt_1", "model": "m"}},
            ["config"],
            "go together",
        ),
        (
            {
                "name": "j",
                "type": "llm_judge",
                "config": {"prompt": "p", "prompt_id": "pmt_1", "prompt_version": 1, "model": "m"},
            },
            ["config"],
            "exactly one",
        ),
        (
            {
                "name": "j",
                "type": "llm_judge",
                "config": {"prompt": "p", "model": "m", "pass_threshold": 1.5},
            },
            ["config", "pass_threshold"],
            "less than or equal",
        ),
        ({"name": "bad name!", "type": "json_valid"}, ["name"], "pattern"),
        (
            {"name": "e", "type": "exact_match", "config": {"casesensitive": False}},
            ["config", "casesensitive"],
            "",
        ),
    ],
)
def test_a_bad_evaluator_is_named_by_index_and_field(
    evaluator: dict[str, Any], loc: list[Any], needle: str
) -> None:
    problems = problems_of(create(evaluators=[{"name": "ok", "type": "json_valid"}, evaluator]))
    assert problems[0]["loc"] == ["body", "evaluators", 1, *loc]
    assert needle in problems[0]["msg"]


def test_message_names_the_first_problem_and_details_list_all() -> None:
    with pytest.raises(InvalidExperiment) as caught:
        decide_create(
            "exp_1",
            create(
                evaluators=[
                    {"name": "a", "type": "regex", "config": {"pattern": "["}},
                    {"name": "b", "type": "nope"},
                ]
            ),
        )
    assert caught.value.message.startswith(
        "experiment is invalid: evaluators.0.config.pattern: pattern does not"
    )
    assert [p["loc"][:3] for p in caught.value.problems] == [
        ["body", "evaluators", 0],
        ["body", "evaluators", 1],
    ]


def test_duplicate_evaluator_names_are_refused() -> None:
    problems = problems_of(
        create(evaluators=[{"name": "a", "type": "json_valid"}, {"name": "a", "type": "exact_match"}])
    )
    assert problems == [
        {
            "loc": ["body", "evaluators", 1, "name"],
            "msg": "name 'a' is already used by evaluators[0]",
            "type": "duplicate_name",
        }
    ]


def test_evaluator_count_and_run_settings_are_bounded() -> None:
    assert problems_of(create(evaluators=[]))[0]["loc"] == ["body", "evaluators"]
    many = [{"name": f"e{i}", "type": "json_valid"} for i in range(21)]
    assert problems_of(create(evaluators=many))[0]["loc"] == ["body", "evaluators"]
    assert problems_of(create(concurrency=0))[0]["loc"] == ["body", "concurrency"]
    assert problems_of(create(concurrency=65))[0]["loc"] == ["body", "concurrency"]
    assert problems_of(create(expected_output_field="a..b"))[0]["loc"] == ["body", "expected_output_field"]


@pytest.mark.parametrize(
    ("target", "loc"),
    [
        ({"type": "agent_version", "agent_id": "agt_1"}, ["body", "target", "version"]),
        ({"type": "agent_version", "agent_id": "agt_1", "version": 0}, ["body", "target", "version"]),
        ({"type": "prompt_version", "agent_id": "agt_1", "version": 1}, ["body", "target", "prompt_id"]),
        ({"type": "model", "model": "gpt-4o"}, ["body", "target"]),
    ],
)
def test_a_bad_target_is_named(target: dict[str, Any], loc: list[Any]) -> None:
    assert problems_of(create(target=target))[0]["loc"] == loc


def test_parameters_and_metadata_must_be_storable() -> None:
    with pytest.raises(InvalidValue) as caught:
        decide_create("exp_1", create(parameters={"model": {"$set": 1}}))
    assert caught.value.problems[0]["loc"] == ["body", "parameters", "model", "$set"]
    with pytest.raises(InvalidValue):
        decide_create("exp_1", create(metadata={"a.b": 1}))


def test_references_name_the_field_that_holds_them() -> None:
    event = decide_create("exp_1", create())
    refs = references_of(
        event.target.model_dump(), event.dataset_id, [e.model_dump() for e in event.evaluators]
    )
    assert refs == [
        Reference("target", "agent_version", "agt_1", 2),
        Reference("dataset_id", "dataset", "dst_1"),
        Reference("evaluators[5].config.prompt_id", "prompt_version", "pmt_1", 3),
    ]
    prompt_target = {"type": "prompt_version", "prompt_id": "pmt_9", "version": 1}
    assert references_of(prompt_target, None, None) == [Reference("target", "prompt_version", "pmt_9", 1)]


def test_result_contracts_refuse_what_cannot_be_stored_or_summed() -> None:
    base = {"experiment_id": "exp_1", "run_number": 1, "example_index": 0}
    ExperimentExampleScored.model_validate({**base, "output": {"label": "x"}, "cost_usd": "0.00042"})
    with pytest.raises(ValidationError, match="key"):
        ExperimentExampleScored.model_validate({**base, "output": {"a.b": 1}})
    with pytest.raises(ValidationError):
        ExperimentExampleScored.model_validate({**base, "cost_usd": "1e-7"})
    with pytest.raises(ValidationError):
        ExperimentExampleScored.model_validate(
            {**base, "scores": [{"evaluator": "e", "score": 1.2, "passed": True}]}
        )
    with pytest.raises(ValidationError):
        ExperimentRunSummary.model_validate(
            {"examples_total": 1, "examples_scored": 1, "examples_failed": 0, "cost_total_usd": 0.1}
        )
