"""ETags and `If-Match`, the same on every service.

An entity's ETag is its stream version in quotes (`"3"`). `If-Match` is `*` or a list of such tags
(weak `W/"3"` tags and bare numbers are accepted too); a header that names no version we issue
matches nothing, so the caller's check answers 412 rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IfMatch:
    versions: frozenset[int] = frozenset()
    any_version: bool = False

    def matches(self, version: int) -> bool:
        return self.any_version or version in self.versions


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(value: str | None) -> IfMatch | None:
    """None when the header is absent or blank (no precondition)."""
    if value is None or not value.strip():
        return None
    if value.strip() == "*":
        return IfMatch(any_version=True)
    versions: set[int] = set()
    for part in value.split(","):
        tag = part.strip().removeprefix("W/").strip()
        if len(tag) >= 2 and tag[0] == tag[-1] == '"':
            tag = tag[1:-1]
        if tag.isascii() and tag.isdigit():
            versions.add(int(tag))
    return IfMatch(versions=frozenset(versions))
