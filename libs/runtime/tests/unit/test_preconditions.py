"""If-Match parsing shared by every service."""

from __future__ import annotations

import pytest

from ailab_runtime.preconditions import IfMatch, etag, parse_if_match

pytestmark = pytest.mark.unit


def test_tags_star_and_garbage() -> None:
    assert etag(3) == '"3"'
    assert parse_if_match(None) is None and parse_if_match("  ") is None
    assert parse_if_match("*") == IfMatch(any_version=True)
    assert parse_if_match('"1", W/"4", 7') == IfMatch(versions=frozenset({1, 4, 7}))
    nothing = parse_if_match('"abc"')
    assert nothing == IfMatch() and not nothing.matches(0), "a tag we never issue matches nothing (412)"
    assert IfMatch(any_version=True).matches(42) and IfMatch(frozenset({2})).matches(2)
