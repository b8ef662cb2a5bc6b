"""Scoring of one example by the evaluators of an experiment (pure, except `llm_judge`, which asks an
injected judge; see `judge.py`). Every evaluator gives a score in 0..1, passed and a detail.

Which values are compared
-------------------------
- Expected value: the example field named by the evaluator's own `field`, else the experiment's
  `expected_output_field` (default `expected`); `a.b` reaches into nested objects. A missing field
  fails the evaluator (score 0, detail says which field).
- Output: the target's output, unwrapped by `comparable_output`: an object with a string `text`
  (e.g. an llm node's `{text, tool_calls, ...}`) compares on that text; else an object with an
  `output` key compares on that value (recursively); anything else as it is.
- Text form (`output_text`, for contains / regex / text comparisons): strings as they are, null as
  "", other values as JSON (`json.dumps`, non-ASCII kept).

Evaluators
----------
- `exact_match`: a string expected value equals the output text, both trimmed of surrounding
  whitespace (`case_sensitive=false` compares casefolded). A non-string expected value (number,
  bool, object, list) equals the output value as JSON (an output string is parsed as JSON first);
  `1` never equals `true`, and `1` equals `1.0`.
- `contains`: the output text contains `value` (or the example's `field`, as text).
- `regex`: `re.search` (or `re.fullmatch` with `full_match`) on the output text.
- `json_valid`: the output is JSON — an object/list output as is, a string that parses (one
  surrounding ```` ```json ```` fence is ignored). With `required_keys` it must be an object; the
  score is the share of required keys present and it passes only with all of them.
- `numeric_tolerance`: the output number (a JSON number, a string that is a number, else the last
  number written in the text) is within `max(abs_tolerance, rel_tolerance * |expected|)` of the
  expected number, computed in `Decimal` on the numbers as written (`"0.3"` equals `0.3` at
  tolerance 0; a float the target computed, like 0.30000000000000004, needs a tolerance). Score 1
  or 0.
- `llm_judge`: see `judge.py` (prompt and answer format, parsing); passes at `score >=
  pass_threshold`.
Binary evaluators score 1.0 (passed) or 0.0.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from ailab_contracts.events.experiments import (
    ContainsEvaluator,
    ExactMatchEvaluator,
    JsonValidEvaluator,
    LlmJudgeEvaluator,
    NumericToleranceEvaluator,
    RegexEvaluator,
)
from ailab_contracts.events.runs import EvaluatorScore

Evaluator = (
    ExactMatchEvaluator
    | ContainsEvaluator
    | RegexEvaluator
    | JsonValidEvaluator
    | NumericToleranceEvaluator
    | LlmJudgeEvaluator
)

MAX_DETAIL = 4000
_MISSING = object()
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    score: float
    passed: bool
    detail: str | None = None

    def named(self, evaluator: str) -> EvaluatorScore:
        score = min(1.0, max(0.0, self.score)) if math.isfinite(self.score) else 0.0
        detail = None if self.detail is None else _clip(self.detail, MAX_DETAIL)
        return EvaluatorScore(evaluator=evaluator, score=score, passed=self.passed, detail=detail)


def _pass(detail: str) -> Verdict:
    return Verdict(1.0, True, detail)


def _fail(detail: str, score: float = 0.0) -> Verdict:
    return Verdict(score, False, detail)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- fields and outputs ----------------------------------------------------------------------------


def get_field(data: Mapping[str, Any], path: str) -> Any:
    """The value at `a.b.c` in `data`, or `_MISSING`."""
    current: Any = data
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def has_field(data: Mapping[str, Any], path: str) -> bool:
    return get_field(data, path) is not _MISSING


def without_fields(data: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A copy of `data` without the fields at `paths` (nested objects are copied, not changed)."""
    result: dict[str, Any] = dict(data)
    for path in paths:
        parts = path.split(".")
        _drop(result, parts)
    return result


def _drop(node: dict[str, Any], parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if head not in node:
        return
    if not rest:
        del node[head]
        return
    child = node[head]
    if isinstance(child, Mapping):
        copy = dict(child)
        _drop(copy, rest)
        node[head] = copy


def comparable_output(output: Any, _depth: int = 0) -> Any:
    """The part of a target output that evaluators look at (see the module docstring)."""
    if isinstance(output, Mapping) and _depth < 8:
        if isinstance(output.get("text"), str):
            return output["text"]
        if "output" in output:
            return comparable_output(output["output"], _depth + 1)
    return output


def output_text(value: Any) -> str:
    """Text form of a value: strings as they are, null as "", anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _describe(value: Any, limit: int = 200) -> str:
    return _clip(json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value), limit)


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: bools never equal numbers, 1 equals 1.0, objects by keys."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _strip_fence(text: str) -> str:
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group("body").strip() if match else stripped


def _parse_json(text: str) -> tuple[bool, Any, str | None]:
    try:
        return True, json.loads(_strip_fence(text)), None
    except ValueError as exc:
        return False, None, str(exc)


# --- the evaluators --------------------------------------------------------------------------------


def exact_match(
    spec: ExactMatchEvaluator, output: Any, example: Mapping[str, Any], expected_field: str
) -> Verdict:
    field = spec.config.field or expected_field
    expected = get_field(example, field)
    if expected is _MISSING:
        return _fail(f"example has no field {field!r}")
    actual = comparable_output(output)
    if isinstance(expected, str):
        got = output_text(actual).strip()
        want = expected.strip()
        if not spec.config.case_sensitive:
            got, want = got.casefold(), want.casefold()
        if got == want:
            return _pass("equal")
        return _fail(f"expected {_describe(expected.strip())}, got {_describe(output_text(actual).strip())}")
    if isinstance(actual, str):
        ok, parsed, _ = _parse_json(actual)
        actual = parsed if ok else actual
    if _json_equal(expected, actual):
        return _pass("equal")
    return _fail(f"expected {_describe(expected)}, got {_describe(actual)}")


def contains(spec: ContainsEvaluator, output: Any, example: Mapping[str, Any]) -> Verdict:
    if spec.config.value is not None:
        needle = spec.config.value
    else:
        field = spec.config.field or ""
        value = get_field(example, field)
        if value is _MISSING:
            return _fail(f"example has no field {field!r}")
        needle = output_text(value)
    haystack = output_text(comparable_output(output))
    if not spec.config.case_sensitive:
        needle, haystack = needle.casefold(), haystack.casefold()
    if needle in haystack:
        return _pass(f"contains {_describe(needle)}")
    return _fail(f"does not contain {_describe(needle)}")


@lru_cache(maxsize=256)
def _compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


def regex(spec: RegexEvaluator, output: Any) -> Verdict:
    config = spec.config
    try:
        pattern = _compiled(config.pattern, config.ignore_case)
    except re.error as exc:  # the registry refuses such patterns; an old definition may hold one
        return _fail(f"pattern does not compile: {exc}")
    text = output_text(comparable_output(output))
    match = pattern.fullmatch(text) if config.full_match else pattern.search(text)
    if match is None:
        how = "does not fully match" if config.full_match else "no match for"
        return _fail(f"{how} /{_clip(config.pattern, 200)}/")
    return _pass(f"matched {_describe(match.group(0))}")


def json_valid(spec: JsonValidEvaluator, output: Any) -> Verdict:
    value = comparable_output(output)
    if isinstance(value, str):
        ok, parsed, error = _parse_json(value)
        if not ok:
            return _fail(f"invalid JSON: {error}")
        value = parsed
    required = spec.config.required_keys
    if not required:
        return _pass("valid JSON")
    if not isinstance(value, Mapping):
        return _fail(f"expected a JSON object with keys {required}, got {type(value).__name__}")
    missing = [key for key in required if key not in value]
    if not missing:
        return _pass("valid JSON with every required key")
    score = (len(required) - len(missing)) / len(required)
    return _fail(f"missing keys {missing}", score)


def _number(value: Any, *, from_text: bool) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return Decimal(str(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().replace(",", "") if from_text else value.strip()
        try:
            number = Decimal(text)
            return number if number.is_finite() else None
        except InvalidOperation:
            pass
        if from_text:
            found = _NUMBER.findall(text)
            if found:
                return Decimal(found[-1])
    return None


def numeric_tolerance(
    spec: NumericToleranceEvaluator, output: Any, example: Mapping[str, Any], expected_field: str
) -> Verdict:
    field = spec.config.field or expected_field
    raw_expected = get_field(example, field)
    if raw_expected is _MISSING:
        return _fail(f"example has no field {field!r}")
    expected = _number(raw_expected, from_text=False)
    if expected is None:
        return _fail(f"expected value {_describe(raw_expected)} is not a number")
    actual = _number(comparable_output(output), from_text=True)
    if actual is None:
        return _fail(f"output {_describe(comparable_output(output))} holds no number")
    allowed = max(
        Decimal(str(spec.config.abs_tolerance)), Decimal(str(spec.config.rel_tolerance)) * abs(expected)
    )
    diff = abs(actual - expected)
    detail = f"|{actual} - {expected}| = {diff}, allowed {allowed}"
    return _pass(detail) if diff <= allowed else _fail(detail)


def score_sync(
    spec: Evaluator, output: Any, example: Mapping[str, Any], expected_field: str
) -> EvaluatorScore | None:
    """The score of a deterministic evaluator (None for `llm_judge`, which needs the judge)."""
    try:
        if isinstance(spec, ExactMatchEvaluator):
            verdict = exact_match(spec, output, example, expected_field)
        elif isinstance(spec, ContainsEvaluator):
            verdict = contains(spec, output, example)
        elif isinstance(spec, RegexEvaluator):
            verdict = regex(spec, output)
        elif isinstance(spec, JsonValidEvaluator):
            verdict = json_valid(spec, output)
        elif isinstance(spec, NumericToleranceEvaluator):
            verdict = numeric_tolerance(spec, output, example, expected_field)
        else:
            return None
    except Exception as exc:  # noqa: BLE001 - a scoring bug must not stop the run
        verdict = _fail(f"evaluator error: {type(exc).__name__}: {exc}")
    return verdict.named(spec.name)


def expected_fields(evaluators: Sequence[Evaluator], expected_field: str) -> list[str]:
    """Example fields holding answers: the expected field and every evaluator's own `field`. They
    are taken out of the target's input, so the target never sees the answer."""
    fields = [expected_field]
    for spec in evaluators:
        field = getattr(spec.config, "field", None)
        if field and field not in fields:
            fields.append(field)
    return fields


def expected_text(example: Mapping[str, Any], expected_field: str) -> str:
    value = get_field(example, expected_field)
    return "" if value is _MISSING else output_text(value)
