"""Prompts and immutable prompt versions, labels, rendering and diffs."""

from ..features import Feature

FEATURE = Feature(name="prompts")
