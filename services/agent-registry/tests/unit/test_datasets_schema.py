"""Schema inference: JSON types, nullable, required and examples per field; CSV type detection."""

from __future__ import annotations

from typing import Any

import pytest

from agent_registry.datasets.parsing import SchemaBuilder, csv_cell_type
from ailab_contracts.events.datasets import DatasetSchema

pytestmark = pytest.mark.unit


def infer(fmt: str, rows: list[dict[str, Any]], **kwargs: Any) -> DatasetSchema:
    builder = SchemaBuilder(fmt, **kwargs)
    for row in rows:
        builder.add(row)
    assert builder.rows == len(rows)
    return builder.build()


def fields(schema: DatasetSchema) -> dict[str, dict[str, Any]]:
    return {f.name: f.model_dump(exclude={"name"}) for f in schema.fields}


def test_jsonl_fields_in_order_of_first_appearance_with_their_types() -> None:
    schema = infer(
        "jsonl",
        [
            {"question": "2 + 2?", "answer": 4, "meta": {"src": "a"}},
            {"question": "pi?", "answer": 3.14, "tags": ["math"], "meta": None},
            {"question": "yes?", "answer": True, "tags": []},
        ],
    )
    assert [f.name for f in schema.fields] == ["question", "answer", "meta", "tags"]
    assert fields(schema) == {
        "question": {"types": ["string"], "nullable": False, "required": True, "example": "2 + 2?"},
        "answer": {
            "types": ["boolean", "integer", "number"],
            "nullable": False,
            "required": True,
            "example": 4,
        },
        "meta": {"types": ["object"], "nullable": True, "required": False, "example": {"src": "a"}},
        "tags": {"types": ["array"], "nullable": False, "required": False, "example": ["math"]},
    }
    assert schema.truncated is False


def test_a_field_that_is_only_ever_null_has_no_type_and_no_example() -> None:
    schema = infer("jsonl", [{"a": None}, {"a": None}])
    assert fields(schema)["a"] == {"types": [], "nullable": True, "required": True, "example": None}


def test_the_example_is_the_first_non_null_value_clipped() -> None:
    long_text = "x" * 500
    big = {"k": "v" * 300}
    schema = infer("jsonl", [{"a": None, "b": big, "c": long_text}, {"a": "first", "b": {"k": 1}}])
    got = fields(schema)
    assert got["a"]["example"] == "first"
    assert got["b"]["example"] is None  # too large to show
    assert got["c"]["example"] == "x" * 200 + "…"


def test_fields_beyond_the_limit_are_not_listed_and_flagged() -> None:
    schema = infer("jsonl", [{f"f{i}": i for i in range(5)}, {"extra": 1}], max_fields=3)
    assert [f.name for f in schema.fields] == ["f0", "f1", "f2"]
    assert schema.truncated is True


@pytest.mark.parametrize(
    ("cell", "kind"),
    [
        ("", None),
        ("0", "integer"),
        ("-12", "integer"),
        ("9223372036854775807", "integer"),
        ("9223372036854775808", "number"),  # beyond 64 bits: still a number
        ("3.5", "number"),
        ("-0.25", "number"),
        ("1e-3", "number"),
        ("2E+10", "number"),
        ("true", "boolean"),
        ("false", "boolean"),
        ("007", "string"),  # leading zeros (ids, zip codes) stay text
        ("+1", "string"),
        (" 1", "string"),
        ("1.", "string"),
        (".5", "string"),
        ("TRUE", "string"),
        ("NaN", "string"),
        ("Infinity", "string"),
        ("1e999", "string"),  # not finite
        ("abc", "string"),
    ],
)
def test_csv_cells_read_as_the_json_literal_they_spell(cell: str, kind: str | None) -> None:
    assert csv_cell_type(cell) == kind


def test_csv_column_types_follow_every_non_empty_cell() -> None:
    rows = [
        {"id": "1", "score": "1", "ok": "true", "zip": "02134", "note": "", "mixed": "1"},
        {"id": "2", "score": "2.5", "ok": "false", "zip": "10001", "note": "", "mixed": "true"},
        {"id": "3", "score": "", "ok": "true", "zip": "94105", "note": "", "mixed": "x"},
    ]
    got = fields(infer("csv", rows))
    assert got["id"] == {"types": ["integer"], "nullable": False, "required": True, "example": "1"}
    assert got["score"] == {"types": ["number"], "nullable": True, "required": True, "example": "1"}
    assert got["ok"]["types"] == ["boolean"]
    assert got["zip"]["types"] == ["string"]
    assert got["note"] == {"types": [], "nullable": True, "required": True, "example": None}
    assert got["mixed"]["types"] == ["string"]


def test_booleans_mixed_with_numbers_make_a_text_column() -> None:
    assert fields(infer("csv", [{"a": "1"}, {"a": "true"}]))["a"]["types"] == ["string"]
