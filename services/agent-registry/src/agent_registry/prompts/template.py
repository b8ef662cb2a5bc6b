"""Prompt template syntax: parsing, checking declared variables, and rendering (pure, no I/O).

Syntax
------
- `{{ name }}` is replaced by the value of the variable `name` (spaces inside the braces are
  optional). Names match `^[A-Za-z_][A-Za-z0-9_]{0,63}$`.
- `\\{{` writes a literal `{{` (the backslash is dropped); single braces are always literal, so
  JSON examples inside a prompt need no escaping.
- Any other `{{` (an unclosed one, or one holding something other than a name, e.g. `{{ a.b }}`
  or `{{ x | upper }}`) is an error: there are no filters, expressions, loops or code execution.
- Values are inserted as text: strings as they are, numbers, booleans and `json` variables as
  JSON (`true`, `3.5`, `{"a": 1}`). Substituted values are never scanned again, so a value
  containing `{{ x }}` stays literal text.
- A declared variable that is optional, has no default and is not supplied renders as "".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.values import json_type, storage_problems

VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
VARIABLE_TYPES: tuple[str, ...] = ("string", "number", "integer", "boolean", "json")

# an escaped `\{{`, a complete `{{ ... }}` without braces inside, or a stray `{{`
_TOKEN = re.compile(r"\\\{\{|\{\{(?P<inner>[^{}]*)\}\}|\{\{")

Loc = list[str | int]


@dataclass(frozen=True)
class Placeholder:
    name: str
    offset: int


Segment = str | Placeholder


@dataclass(frozen=True)
class ParsedText:
    segments: tuple[Segment, ...]
    problems: tuple[dict[str, Any], ...] = ()

    @property
    def names(self) -> list[str]:
        """Placeholder names in order of first use."""
        return list(dict.fromkeys(s.name for s in self.segments if isinstance(s, Placeholder)))


def _position(text: str, offset: int) -> dict[str, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return {"line": line, "column": column}


def parse(text: str, loc: Sequence[str | int] = ()) -> ParsedText:
    """Split `text` into literal text and placeholders; malformed `{{` are listed as problems."""
    segments: list[Segment] = []
    problems: list[dict[str, Any]] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        if token == "\\{{":
            literal.append("{{")
            continue
        inner = match.group("inner")
        if inner is None:
            problems.append(
                {
                    "code": "malformed_placeholder",
                    "message": "`{{` must start a `{{ name }}` placeholder; write `\\{{` for a literal `{{`",
                    "loc": list(loc),
                    **_position(text, match.start()),
                }
            )
            literal.append(token)
            continue
        name = inner.strip()
        if not VARIABLE_NAME.match(name):
            problems.append(
                {
                    "code": "invalid_placeholder",
                    "message": f"`{token}` is not a placeholder: names match {VARIABLE_NAME.pattern} "
                    "and templates hold no expressions",
                    "loc": list(loc),
                    "placeholder": token,
                    **_position(text, match.start()),
                }
            )
            literal.append(token)
            continue
        if literal:
            segments.append("".join(literal))
            literal = []
        segments.append(Placeholder(name, match.start()))
    literal.append(text[pos:])
    tail = "".join(literal)
    if tail:
        segments.append(tail)
    return ParsedText(tuple(segments), tuple(problems))


# --- declared variables ---------------------------------------------------------------------------


def type_problem(var_type: str, value: Any) -> str | None:
    """Why `value` is not of the declared `var_type`, or None when it is."""
    if var_type == "string":
        ok = isinstance(value, str)
    elif var_type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    elif var_type == "integer":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    elif var_type == "boolean":
        ok = isinstance(value, bool)
    elif var_type == "json":
        ok = True
    else:
        return f"unknown type {var_type!r}"
    if not ok:
        return f"expected {var_type}, got {json_type(value)}"
    # the value may end up stored (a default) or in a rendered text: it must be plain JSON
    return "; ".join(p["message"] for p in storage_problems(value, [])) or None


def _coerce(var_type: str, value: Any) -> Any:
    return int(value) if var_type == "integer" and isinstance(value, float) else value


def variable_problems(
    variables: Sequence[Mapping[str, Any]], loc: Sequence[str | int]
) -> list[dict[str, Any]]:
    """Bad names, duplicates, unknown types and defaults that do not match their type."""
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, var in enumerate(variables):
        name = var.get("name")
        here: Loc = [*loc, i]
        if not isinstance(name, str) or not VARIABLE_NAME.match(name):
            problems.append(
                {
                    "code": "invalid_variable_name",
                    "message": f"variable name {name!r} must match {VARIABLE_NAME.pattern}",
                    "loc": [*here, "name"],
                }
            )
        elif name in seen:
            problems.append(
                {
                    "code": "duplicate_variable",
                    "message": f"variable {name!r} is declared more than once",
                    "loc": [*here, "name"],
                }
            )
        seen.add(str(name))
        var_type = var.get("type", "string")
        if var_type not in VARIABLE_TYPES:
            problems.append(
                {
                    "code": "invalid_variable_type",
                    "message": f"type {var_type!r} is not one of {', '.join(VARIABLE_TYPES)}",
                    "loc": [*here, "type"],
                }
            )
            continue
        default = var.get("default")
        if default is not None:
            why = type_problem(var_type, default)
            if why:
                problems.append(
                    {
                        "code": "invalid_default",
                        "message": f"default of {name!r}: {why}",
                        "loc": [*here, "default"],
                    }
                )
    return problems


@dataclass(frozen=True)
class Check:
    """Result of checking a version's text against its declared variables."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    used: list[str] = field(default_factory=list)


def texts_of(template: str | None, messages: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, Loc]]:
    """Every text holding placeholders, with its location in a request body."""
    if template is not None:
        return [(template, ["body", "template"])]
    return [
        (str(m.get("content", "")), ["body", "messages", i, "content"]) for i, m in enumerate(messages or [])
    ]


def check_version(
    template: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    variables: Sequence[Mapping[str, Any]],
) -> Check:
    """Problems (reject the version) and warnings (accept it) of a version's text and variables:
    not exactly one of template/messages, malformed placeholders, bad variable declarations,
    placeholders that are not declared (problems); declared variables never used (warnings)."""
    problems: list[dict[str, Any]] = []
    if (template is None) == (messages is None):
        problems.append(
            {
                "code": "template_or_messages",
                "message": "give exactly one of `template` (text prompt) and `messages` (chat prompt)",
                "loc": ["body"],
            }
        )
        return Check(problems)
    if messages is not None and not messages:
        problems.append(
            {"code": "no_messages", "message": "a chat prompt needs messages", "loc": ["body", "messages"]}
        )
    problems.extend(variable_problems(variables, ["body", "variables"]))
    declared = {str(v.get("name")) for v in variables}
    used: list[str] = []
    first_use: dict[str, Loc] = {}
    for text, loc in texts_of(template, messages):
        parsed = parse(text, loc)
        problems.extend(parsed.problems)
        for name in parsed.names:
            first_use.setdefault(name, loc)
            if name not in used:
                used.append(name)
    for name in used:
        if name not in declared:
            problems.append(
                {
                    "code": "undeclared_placeholder",
                    "message": f"placeholder {{{{ {name} }}}} is used but not declared in `variables`",
                    "loc": first_use[name],
                    "name": name,
                }
            )
    warnings = [
        {
            "code": "unused_variable",
            "message": f"variable {v.get('name')!r} is declared but no placeholder uses it",
            "loc": ["body", "variables", i],
            "name": v.get("name"),
        }
        for i, v in enumerate(variables)
        if v.get("name") not in used
    ]
    return Check(problems, warnings, used)


# --- rendering ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Values:
    """Supplied values checked against the declarations."""

    used: dict[str, Any]
    missing: list[str]
    undeclared: list[str]
    type_errors: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.undeclared or self.type_errors)

    def details(self) -> dict[str, Any]:
        return {"missing": self.missing, "undeclared": self.undeclared, "type_errors": self.type_errors}


def check_values(variables: Sequence[Mapping[str, Any]], supplied: Mapping[str, Any]) -> Values:
    """The value of each declared variable (supplied, else its default), and every way `supplied`
    is wrong: required variables without a value, names not declared, values of the wrong type."""
    declared = {str(v["name"]): v for v in variables}
    used: dict[str, Any] = {}
    missing: list[str] = []
    type_errors: list[dict[str, Any]] = []
    for name, var in declared.items():
        var_type = str(var.get("type", "string"))
        if name in supplied:
            value = supplied[name]
            why = type_problem(var_type, value)
            if why:
                type_errors.append(
                    {"name": name, "expected": var_type, "got": json_type(value), "message": why}
                )
                continue
            used[name] = _coerce(var_type, value)
        elif var.get("default") is not None:
            used[name] = var["default"]
        elif var.get("required", True):
            missing.append(name)
    undeclared = sorted(set(supplied) - set(declared))
    return Values(used, missing, undeclared, type_errors)


def to_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _format(var_type: str, value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if var_type == "json" else to_text(value)


def render_text(text: str, values: Mapping[str, Any], types: Mapping[str, str] | None = None) -> str:
    """`text` with every placeholder replaced (missing values render as ""). Expects a text that
    `parse` accepted; malformed `{{` stay as written."""
    out: list[str] = []
    for segment in parse(text).segments:
        if isinstance(segment, Placeholder):
            if segment.name in values:
                out.append(_format((types or {}).get(segment.name, "string"), values[segment.name]))
        else:
            out.append(segment)
    return "".join(out)


def render(
    template: str | None,
    messages: Iterable[Mapping[str, Any]] | None,
    variables: Sequence[Mapping[str, Any]],
    values: Mapping[str, Any],
) -> str | list[dict[str, Any]]:
    """The rendered text, or the rendered messages of a chat prompt."""
    types = {str(v["name"]): str(v.get("type", "string")) for v in variables}
    if template is not None:
        return render_text(template, values, types)
    return [
        {"role": m["role"], "content": render_text(str(m.get("content", "")), values, types)}
        for m in messages or []
    ]
