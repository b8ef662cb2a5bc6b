"""`{{ path }}` templates over a run's context (pure, no code execution).

The context holds `inputs` (the run inputs), `last` (the output of the node executed last) and one
entry per executed node id (its latest output). A path is a name followed by `.field`, `.0` or
`[0]` steps: `inputs.question`, `draft.text`, `search.items[0].title`. A first name that is not in
the context is looked up in `inputs` (`{{ question }}` = `{{ inputs.question }}`).

- `render_text` replaces each placeholder by the value as text (strings as they are, null as "",
  anything else as compact JSON); `\\{{` writes a literal `{{`. An unknown path is an error.
- `render_value` walks a JSON structure and renders its strings; a string that is exactly one
  placeholder yields the value itself (so `{"items": "{{ search.items }}"}` keeps a list a list).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_SEGMENT = re.compile(r"\.?([A-Za-z0-9_-]+)|\[(\d+)\]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*")
_TOKEN = re.compile(r"\\\{\{|\{\{(?P<inner>[^{}]*)\}\}")
_WHOLE = re.compile(r"^\s*\{\{(?P<inner>[^{}]*)\}\}\s*$")
MAX_TEXT = 1_000_000  # characters a rendered text may reach


class TemplateError(Exception):
    """A placeholder is malformed or names a path the context does not have."""

    code = "template_error"


class MissingPath(TemplateError):
    pass


def parse_path(path: str) -> list[str | int]:
    """`a.b[0].c` -> ["a", "b", 0, "c"]; raises TemplateError for anything else."""
    text = path.strip()
    head = _NAME.match(text)
    if head is None:
        raise TemplateError(f"{path!r} is not a path (expected e.g. `inputs.question` or `draft.text`)")
    steps: list[str | int] = [head.group(0)]
    pos = head.end()
    while pos < len(text):
        match = _SEGMENT.match(text, pos)
        if match is None or match.end() == pos or (match.group(1) and text[pos] != "."):
            raise TemplateError(f"{path!r} is not a path (expected e.g. `inputs.question` or `draft.text`)")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return steps


_MISSING = object()


def _step(value: Any, step: str | int) -> Any:
    if isinstance(value, Mapping):
        key = str(step)
        return value[key] if key in value else _MISSING
    if isinstance(value, list | tuple):
        try:
            index = int(step)
        except ValueError:
            return _MISSING
        return value[index] if 0 <= index < len(value) else _MISSING
    return _MISSING


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """The value at `path`; raises MissingPath when there is none."""
    steps = parse_path(path)
    first = str(steps[0])
    if first in context:
        value: Any = context[first]
    else:
        value = _step(context.get("inputs") or {}, first)
        if value is _MISSING:
            raise MissingPath(f"`{path}`: no `{first}` in the context or in the inputs")
    for i, step in enumerate(steps[1:], start=1):
        value = _step(value, step)
        if value is _MISSING:
            shown = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps[1 : i + 1])
            raise MissingPath(f"`{path}`: `{first}{shown}` does not exist")
    return value


def lookup_or(context: Mapping[str, Any], path: str, default: Any = None) -> Any:
    try:
        return lookup(context, path)
    except MissingPath:
        return default


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def render_text(template: str, context: Mapping[str, Any]) -> str:
    out: list[str] = []
    pos = 0
    size = 0
    for match in _TOKEN.finditer(template):
        out.append(template[pos : match.start()])
        pos = match.end()
        if match.group(0) == "\\{{":
            out.append("{{")
            continue
        piece = as_text(lookup(context, match.group("inner")))
        size += len(piece)
        if size > MAX_TEXT:
            raise TemplateError(f"the rendered text exceeds {MAX_TEXT} characters")
        out.append(piece)
    out.append(template[pos:])
    return "".join(out)


def render_value(value: Any, context: Mapping[str, Any], depth: int = 0) -> Any:
    if depth > 32:
        raise TemplateError("the value nests deeper than 32 levels")
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole is not None:
            return lookup(context, whole.group("inner"))
        return render_text(value, context)
    if isinstance(value, Mapping):
        return {str(k): render_value(v, context, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context, depth + 1) for v in value]
    return value


def placeholders(template: str) -> list[str]:
    """Paths used in `template`, in order of first use."""
    return list(
        dict.fromkeys(
            m.group("inner").strip() for m in _TOKEN.finditer(template) if m.group("inner") is not None
        )
    )
