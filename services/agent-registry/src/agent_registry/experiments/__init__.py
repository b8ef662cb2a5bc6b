"""Experiment definitions, start requests, and status/results from the run-executor."""

from ..features import Feature

FEATURE = Feature(name="experiments")
