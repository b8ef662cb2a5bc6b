"""Commands of the experiments area (imperative names, plain data as the caller sent it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.commands import Precondition


@dataclass(frozen=True)
class CreateExperiment:
    """`target` and `evaluators` are raw JSON: the domain validates them (422 `invalid_experiment`)."""

    tenant_id: str
    actor: str
    name: str
    target: Mapping[str, Any]
    dataset_id: str
    evaluators: Sequence[Mapping[str, Any]]
    description: str | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int = 4
    expected_output_field: str = "expected"


@dataclass(frozen=True)
class UpdateExperiment:
    """`changes` holds the fields to set (any field of the definition, and `status`)."""

    tenant_id: str
    experiment_id: str
    actor: str
    changes: Mapping[str, Any]
    precondition: Precondition | None = None


@dataclass(frozen=True)
class StartExperiment:
    """`force` starts a new run even while the previous one is still pending or running."""

    tenant_id: str
    experiment_id: str
    actor: str
    force: bool = False
