"""Condition nodes: a simple comparison over the run context, no code.

Config::

    {"path": "draft.text", "op": "contains", "value": "refund"}     # one comparison
    {"all": [<condition>, ...]}  {"any": [<condition>, ...]}        # combinations
    {"not": <condition>}

Ops: `equals`, `not_equals`, `contains` (substring, list element or object key), `regex` (Python
`re.search`; pattern at most 500 characters, applied to at most the first 100,000 characters),
`gt`, `gte`, `lt`, `lte` (numbers, or two strings), `exists`, `empty`. A path the context does not
have reads as null (so `exists` is false and comparisons are false); `value` is literal or a
`{{ path }}` template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .template import MissingPath, TemplateError, as_text, lookup, render_value

OPS = ("equals", "not_equals", "contains", "regex", "gt", "gte", "lt", "lte", "exists", "empty")
MAX_PATTERN = 500
MAX_SUBJECT = 100_000


class ConditionError(ValueError):
    code = "invalid_condition"


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


def _compare(left: Any, right: Any, op: str) -> bool:
    if left is None or right is None:
        return False
    a, b = _number(left), _number(right)
    if a is None or b is None:
        if isinstance(left, str) and isinstance(right, str):
            a_s, b_s = left, right
            return {"gt": a_s > b_s, "gte": a_s >= b_s, "lt": a_s < b_s, "lte": a_s <= b_s}[op]
        raise ConditionError(f"`{op}` compares numbers (or two strings); got {left!r} and {right!r}")
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _equals(left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if not isinstance(left, str) and not isinstance(right, str) and a is not None and b is not None:
        return a == b
    return bool(left == right)


def _contains(left: Any, right: Any) -> bool:
    if isinstance(left, str):
        return as_text(right) in left
    if isinstance(left, list):
        return any(_equals(item, right) for item in left)
    if isinstance(left, Mapping):
        return as_text(right) in left
    return False


def _regex(left: Any, pattern: Any) -> bool:
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
        raise ConditionError(f"`regex` needs a pattern string of at most {MAX_PATTERN} characters")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConditionError(f"invalid regular expression: {exc}") from None
    if left is None:
        return False
    return compiled.search(as_text(left)[:MAX_SUBJECT]) is not None


def evaluate_condition(config: Mapping[str, Any], context: Mapping[str, Any], depth: int = 0) -> bool:
    if depth > 16:
        raise ConditionError("conditions nest deeper than 16 levels")
    if not isinstance(config, Mapping):
        raise ConditionError("a condition is an object")
    if "all" in config or "any" in config:
        key = "all" if "all" in config else "any"
        parts = config[key]
        if not isinstance(parts, list) or not parts:
            raise ConditionError(f"`{key}` needs a non-empty list of conditions")
        results = (evaluate_condition(p, context, depth + 1) for p in parts)
        return all(results) if key == "all" else any(results)
    if "not" in config:
        return not evaluate_condition(config["not"], context, depth + 1)
    path, op = config.get("path"), config.get("op", "equals")
    if not isinstance(path, str) or not path.strip():
        raise ConditionError("a condition needs `path` (e.g. `draft.text`)")
    if op not in OPS:
        raise ConditionError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    try:
        left = lookup(context, path)
        present = True
    except MissingPath:
        left, present = None, False
    except TemplateError as exc:
        raise ConditionError(str(exc)) from None
    if op == "exists":
        return present and left is not None
    if op == "empty":
        return left in (None, "", [], {})
    try:
        right = render_value(config.get("value"), context)
    except TemplateError as exc:
        raise ConditionError(f"`value`: {exc}") from None
    if op == "equals":
        return _equals(left, right)
    if op == "not_equals":
        return not _equals(left, right)
    if op == "contains":
        return _contains(left, right)
    if op == "regex":
        return _regex(left, right)
    return _compare(left, right, op)
