"""Datasets: streamed JSONL/CSV upload and download, inferred schema, addressable examples."""

from ..features import Feature

FEATURE = Feature(name="datasets")
