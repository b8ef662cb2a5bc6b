"""Rules for JSON values the executor stores (inputs, outputs, span payloads): what MongoDB can keep."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32


def storage_problems(value: Any, loc: list[str | int], depth: int = 0) -> list[dict[str, Any]]:
    """Every reason `value` cannot be stored as is (keys with a `$` prefix, `.` or NUL, integers past
    64 bits, NaN/Infinity, nesting deeper than 32), each with `loc` naming where."""
    if depth > MAX_DEPTH:
        return [{"code": "too_deep", "message": f"nests deeper than {MAX_DEPTH} levels", "loc": loc}]
    problems: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key:
                problems.append(
                    {
                        "code": "invalid_key",
                        "message": f"key {key!r} must be non-empty and hold no '$' prefix, '.' or NUL",
                        "loc": [*loc, str(key)],
                    }
                )
                continue
            problems.extend(storage_problems(item, [*loc, key], depth + 1))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems.extend(storage_problems(item, [*loc, i], depth + 1))
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        pass
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            problems.append(
                {"code": "integer_too_large", "message": "integers must fit in 64 bits", "loc": loc}
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append(
                {"code": "not_finite", "message": "NaN and Infinity are not JSON numbers", "loc": loc}
            )
    else:
        problems.append(
            {
                "code": "unsupported_type",
                "message": f"unsupported value of type {type(value).__name__}",
                "loc": loc,
            }
        )
    return problems


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def storable_preview(value: Any, limit: int = 16_384) -> Any:
    """`value` when it can be stored and its JSON is at most `limit` characters; otherwise
    `{"truncated": true, "preview": <the first `limit` characters of its JSON>}`."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(value)
        return {"truncated": True, "preview": text[:limit]}
    if len(text) <= limit and not storage_problems(value, []):
        return value
    return {"truncated": len(text) > limit, "preview": text[:limit]}


def storable_output(value: Any) -> Any:
    """A run output that can be stored: the value itself, or its JSON text when a key or number
    could not be kept (keys with `.` from a provider's JSON, for instance)."""
    if not storage_problems(value, []):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
