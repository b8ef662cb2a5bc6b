"""Template syntax, declared-variable checks, value type checks, rendering and diffs of prompts."""

from __future__ import annotations

from typing import Any

import pytest

from agent_registry.prompts.diff import diff_versions, unified_text_diff, version_text
from agent_registry.prompts.template import (
    Placeholder,
    check_values,
    check_version,
    parse,
    render,
    type_problem,
)

pytestmark = pytest.mark.unit


def codes(problems: list[dict[str, Any]]) -> list[str]:
    return [p["code"] for p in problems]


# --- parsing --------------------------------------------------------------------------------------


def test_placeholders_with_or_without_spaces_are_found_in_order() -> None:
    parsed = parse("Hi {{name}}, {{ greeting }} {{  name  }}!")
    assert parsed.problems == ()
    assert parsed.names == ["name", "greeting"]
    assert parsed.segments == (
        "Hi ",
        Placeholder("name", 3),
        ", ",
        Placeholder("greeting", 13),
        " ",
        Placeholder("name", 28),
        "!",
    )


def test_escaped_braces_and_single_braces_are_literal() -> None:
    parsed = parse('JSON: {"a": {"b": 1}} and \\{{ not_a_var }}')
    assert parsed.problems == () and parsed.names == []
    assert parsed.segments == ('JSON: {"a": {"b": 1}} and {{ not_a_var }}',)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{{ a.b }}", "invalid_placeholder"),
        ("{{ x | upper }}", "invalid_placeholder"),
        ("{{ 1abc }}", "invalid_placeholder"),
        ("{{ }}", "invalid_placeholder"),
        ("{{ __import__('os') }}", "invalid_placeholder"),
        ("Hello {{ name", "malformed_placeholder"),
        ("{{{ name }}}", "malformed_placeholder"),
    ],
)
def test_anything_but_a_name_between_double_braces_is_refused(text: str, code: str) -> None:
    parsed = parse(text, ["body", "template"])
    assert codes(list(parsed.problems)) == [code]
    assert parsed.problems[0]["loc"] == ["body", "template"]


def test_problems_carry_line_and_column() -> None:
    problem = parse("line one\n  {{ bad-name }}").problems[0]
    assert (problem["line"], problem["column"]) == (2, 3)


# --- version checks -------------------------------------------------------------------------------


def test_exactly_one_of_template_and_messages() -> None:
    assert codes(check_version(None, None, []).problems) == ["template_or_messages"]
    assert codes(check_version("x", [{"role": "user", "content": "y"}], []).problems) == [
        "template_or_messages"
    ]
    assert codes(check_version(None, [], []).problems) == ["no_messages"]


def test_undeclared_placeholders_are_errors_and_unused_variables_warnings() -> None:
    check = check_version(
        None,
        [{"role": "system", "content": "Be {{ tone }}"}, {"role": "user", "content": "{{ question }}"}],
        [{"name": "tone"}, {"name": "unused"}],
    )
    assert [(p["code"], p["name"], p["loc"]) for p in check.problems] == [
        ("undeclared_placeholder", "question", ["body", "messages", 1, "content"])
    ]
    assert [(w["code"], w["name"]) for w in check.warnings] == [("unused_variable", "unused")]
    assert check.used == ["tone", "question"]


def test_variable_declarations_are_checked() -> None:
    check = check_version(
        "{{ a }}",
        None,
        [
            {"name": "a", "type": "integer", "default": "three"},
            {"name": "a"},
            {"name": "bad name"},
            {"name": "c", "type": "date"},
            {"name": "d", "type": "boolean", "default": False},
        ],
    )
    assert [(p["code"], p["loc"]) for p in check.problems] == [
        ("invalid_default", ["body", "variables", 0, "default"]),
        ("duplicate_variable", ["body", "variables", 1, "name"]),
        ("invalid_variable_name", ["body", "variables", 2, "name"]),
        ("invalid_variable_type", ["body", "variables", 3, "type"]),
    ]


def test_a_valid_version_has_no_problems() -> None:
    check = check_version(
        "Dear {{ name }}, you owe {{ amount }}.", None, [{"name": "name"}, {"name": "amount"}]
    )
    assert check.problems == [] and check.warnings == []


# --- types and values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var_type", "good", "bad"),
    [
        ("string", ["", "x"], [1, None, True, ["x"]]),
        ("number", [1, 2.5, -3], ["1", True, None, float("nan"), float("inf")]),
        ("integer", [1, -7, 3.0], [1.5, "1", False]),
        ("boolean", [True, False], [0, 1, "true", None]),
        ("json", [None, 1, "s", [1, {"a": None}], {"k": [True]}], [{"$x": 1}, {"a.b": 1}, float("nan")]),
    ],
)
def test_type_checks(var_type: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert type_problem(var_type, value) is None, value
    for value in bad:
        assert type_problem(var_type, value) is not None, value


def test_integer_default_must_fit_64_bits() -> None:
    assert type_problem("integer", 2**70) == "integers must fit in 64 bits"


def test_values_are_checked_and_defaults_applied() -> None:
    variables = [
        {"name": "name", "type": "string", "required": True},
        {"name": "tone", "type": "string", "required": False, "default": "friendly"},
        {"name": "count", "type": "integer", "required": True},
        {"name": "extra", "type": "string", "required": False},
    ]
    ok = check_values(variables, {"name": "Ada", "count": 2.0})
    assert ok.ok and ok.used == {"name": "Ada", "tone": "friendly", "count": 2}
    assert isinstance(ok.used["count"], int)

    bad = check_values(variables, {"count": "two", "nope": 1, "other": 2})
    assert not bad.ok
    assert bad.details() == {
        "missing": ["name"],
        "undeclared": ["nope", "other"],
        "type_errors": [
            {
                "name": "count",
                "expected": "integer",
                "got": "string",
                "message": "expected integer, got string",
            }
        ],
    }


# --- rendering ------------------------------------------------------------------------------------


def test_render_text_formats_values_by_type_and_never_rescans_them() -> None:
    variables = [
        {"name": "who", "type": "string"},
        {"name": "n", "type": "number"},
        {"name": "flag", "type": "boolean"},
        {"name": "data", "type": "json"},
        {"name": "absent", "type": "string", "required": False},
    ]
    out = render(
        "{{ who }}|{{n}}|{{ flag }}|{{ data }}|{{ absent }}|\\{{ who }}",
        None,
        variables,
        {"who": "{{ n }}", "n": 2.5, "flag": True, "data": {"a": [1, "é"]}},
    )
    assert out == '{{ n }}|2.5|true|{"a": [1, "é"]}||{{ who }}'


def test_render_messages_keeps_roles() -> None:
    out = render(
        None,
        [{"role": "system", "content": "Be {{ tone }}."}, {"role": "user", "content": "Hi"}],
        [{"name": "tone"}],
        {"tone": "brief"},
    )
    assert out == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


# --- diff -----------------------------------------------------------------------------------------


def test_unified_diff_of_templates() -> None:
    diff = unified_text_diff("a\nb\nc", "a\nB\nc", "p:v1", "p:v2")
    assert diff == "--- p:v1\n+++ p:v2\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
    assert unified_text_diff("same", "same", "x", "y") == ""


def test_messages_are_compared_as_role_lines() -> None:
    text = version_text(None, [{"role": "system", "content": "S"}, {"role": "user", "content": "U\nV"}])
    assert text == "[system]\nS\n[user]\nU\nV"


def test_structured_changes_of_variables_and_model_params() -> None:
    before = {
        "template": "Hi {{ a }}",
        "messages": None,
        "variables": [
            {"name": "a", "type": "string", "required": True, "default": None},
            {"name": "gone", "type": "string", "required": True, "default": None},
        ],
        "model_params": {"model": "m1", "temperature": 0.7, "stop": ["\n"]},
    }
    after = {
        "template": None,
        "messages": [{"role": "user", "content": "Hi {{ a }} {{ b }}"}],
        "variables": [
            {"name": "a", "type": "string", "required": False, "default": "x"},
            {"name": "b", "type": "integer", "required": True, "default": None},
        ],
        "model_params": {"model": "m1", "temperature": 0.2, "top_p": 0.9},
    }
    diff = diff_versions(before, after, "p:v1", "p:v2")
    assert diff["kind_changed"] is True and diff["text_changed"] is True
    assert diff["text_diff"].splitlines()[2:] == [
        "@@ -1 +1,2 @@",
        "-Hi {{ a }}",
        "+[user]",
        "+Hi {{ a }} {{ b }}",
    ]
    assert diff["variables"] == {
        "added": [{"name": "b", "type": "integer", "required": True, "default": None}],
        "removed": [{"name": "gone", "type": "string", "required": True, "default": None}],
        "changed": [
            {
                "name": "a",
                "changes": {"default": {"from": None, "to": "x"}, "required": {"from": True, "to": False}},
            }
        ],
    }
    assert diff["model_params"] == {
        "added": {"top_p": 0.9},
        "removed": {"stop": ["\n"]},
        "changed": {"temperature": {"from": 0.7, "to": 0.2}},
    }
    same = diff_versions(before, before, "a", "b")
    assert same["text_diff"] == "" and not same["text_changed"] and not same["kind_changed"]
    assert same["variables"] == {"added": [], "removed": [], "changed": []}
