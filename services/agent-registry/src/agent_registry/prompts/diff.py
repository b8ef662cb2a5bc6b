"""Differences between two prompt versions (pure): a unified diff of their text and structured
changes of their variables and model parameters."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any


def version_text(template: str | None, messages: Sequence[Mapping[str, Any]] | None) -> str:
    """The text a diff compares: the template, or each message as a `[role]` line and its content."""
    if template is not None:
        return template
    return "\n".join(f"[{m.get('role')}]\n{m.get('content', '')}" for m in messages or [])


def unified_text_diff(before: str, after: str, from_name: str, to_name: str, context: int = 3) -> str:
    """`diff -u` output of two texts, line by line ("" when they are equal)."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=from_name, tofile=to_name, n=context, lineterm=""
    )
    return "".join(f"{line}\n" for line in lines)


def mapping_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Keys added, removed and changed between two mappings."""
    return {
        "added": {k: after[k] for k in after if k not in before},
        "removed": {k: before[k] for k in before if k not in after},
        "changed": {
            k: {"from": before[k], "to": after[k]} for k in before if k in after and before[k] != after[k]
        },
    }


def variable_changes(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Variables added and removed (whole declarations) and changed (field by field), by name."""
    old = {str(v["name"]): dict(v) for v in before}
    new = {str(v["name"]): dict(v) for v in after}
    changed = []
    for name in old.keys() & new.keys():
        fields = mapping_changes(old[name], new[name])
        diff = {
            **{k: {"from": None, "to": v} for k, v in fields["added"].items()},
            **{k: {"from": v, "to": None} for k, v in fields["removed"].items()},
            **fields["changed"],
        }
        if diff:
            changed.append({"name": name, "changes": dict(sorted(diff.items()))})
    return {
        "added": [new[n] for n in new if n not in old],
        "removed": [old[n] for n in old if n not in new],
        "changed": sorted(changed, key=lambda c: c["name"]),
    }


def diff_versions(
    before: Mapping[str, Any], after: Mapping[str, Any], from_name: str, to_name: str
) -> dict[str, Any]:
    """Both arguments hold `template`, `messages`, `variables` and `model_params` of a version."""
    old_text = version_text(before.get("template"), before.get("messages"))
    new_text = version_text(after.get("template"), after.get("messages"))
    return {
        "kind_changed": (before.get("template") is None) != (after.get("template") is None),
        "text_changed": old_text != new_text,
        "text_diff": unified_text_diff(old_text, new_text, from_name, to_name),
        "variables": variable_changes(before.get("variables") or [], after.get("variables") or []),
        "model_params": mapping_changes(before.get("model_params") or {}, after.get("model_params") or {}),
    }
