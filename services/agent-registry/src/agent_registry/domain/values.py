"""What a free-form JSON value (metadata, config) must look like to be stored and served back.

MongoDB/FerretDB refuse keys that are empty, start with `$` or hold `.`/NUL, integers beyond
64 bits and NaN/Infinity (which Python's JSON parser accepts); refusing them here turns what
would be a 500 at write time into a 422 that names the offending field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

MAX_DEPTH = 32
MAX_JSON_BYTES = 512 * 1024
_INT64 = (-(2**63), 2**63 - 1)


def _problem(code: str, message: str, loc: list[str | int]) -> dict[str, Any]:
    return {"code": code, "message": message, "loc": loc}


def storage_problems(
    value: Any, loc: Sequence[str | int], max_bytes: int = MAX_JSON_BYTES
) -> list[dict[str, Any]]:
    """Every reason `value` cannot be stored, each with its location."""
    problems: list[dict[str, Any]] = []
    _walk(value, list(loc), 0, problems)
    if not problems:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > max_bytes:
            problems.append(
                _problem("value_too_large", f"value is {size} bytes; the limit is {max_bytes}", list(loc))
            )
    return problems


def _walk(value: Any, loc: list[str | int], depth: int, problems: list[dict[str, Any]]) -> None:
    if depth > MAX_DEPTH:
        problems.append(_problem("too_deep", f"value nests deeper than {MAX_DEPTH} levels", loc))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
                problems.append(
                    _problem(
                        "invalid_key",
                        f"key {key!r} must be non-empty and hold no '$' prefix, '.' or NUL",
                        [*loc, str(key)],
                    )
                )
                continue
            _walk(item, [*loc, key], depth + 1, problems)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, [*loc, i], depth + 1, problems)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            problems.append(_problem("integer_out_of_range", "integers must fit in 64 bits", loc))
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append(_problem("non_finite_number", "NaN and Infinity are not JSON numbers", loc))
    else:
        problems.append(
            _problem("unsupported_value", f"unsupported value of type {type(value).__name__}", loc)
        )


def json_type(value: Any) -> str:
    """The JSON type name of a value (`null`, `boolean`, `integer`, `number`, `string`, `array`, `object`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
