"""Free-form JSON values must be storable in MongoDB/FerretDB and servable as JSON."""

from __future__ import annotations

import pytest

from agent_registry.domain.values import MAX_DEPTH, storage_problems

pytestmark = pytest.mark.unit


def test_ordinary_json_is_storable() -> None:
    value = {"model": "gpt-4o", "temperature": 0.2, "stop": ["\n", None], "nested": {"a": [1, {"b": True}]}}
    assert storage_problems(value, ["config"]) == []


@pytest.mark.parametrize("key", ["$set", "a.b", "", "nul\x00"])
def test_keys_mongodb_refuses_are_reported_with_their_location(key: str) -> None:
    (problem,) = storage_problems({"outer": {key: 1}}, ["body", "metadata"])
    assert problem["code"] == "invalid_key"
    assert problem["loc"] == ["body", "metadata", "outer", key]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (2**63, "integer_out_of_range"),
        (-(2**63) - 1, "integer_out_of_range"),
        (float("nan"), "non_finite_number"),
        (float("inf"), "non_finite_number"),
    ],
)
def test_numbers_that_cannot_be_stored_or_served(value: object, code: str) -> None:
    (problem,) = storage_problems({"list": [0, value]}, ["config"])
    assert problem == {"code": code, "message": problem["message"], "loc": ["config", "list", 1]}


def test_int64_bounds_are_fine() -> None:
    assert storage_problems({"a": 2**63 - 1, "b": -(2**63)}, []) == []


def test_too_deep_and_too_large() -> None:
    deep: dict[str, object] = {}
    for _ in range(MAX_DEPTH + 2):
        deep = {"k": deep}
    assert [p["code"] for p in storage_problems(deep, [])] == ["too_deep"]
    assert [p["code"] for p in storage_problems({"blob": "x" * 100}, [], max_bytes=50)] == ["value_too_large"]
