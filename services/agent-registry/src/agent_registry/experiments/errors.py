"""Rule violations of the experiments area; each carries its HTTP status (see `api.install`)."""

from __future__ import annotations

from typing import Any

from ..domain.errors import RegistryError


class ExperimentRuleError(RegistryError):
    status = 400


class InvalidExperiment(ExperimentRuleError):
    """The definition does not validate (target, evaluators, their configs)."""

    code = "invalid_experiment"
    status = 422

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        first = problems[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"experiment is invalid: {where}: {first['msg']}{more}", problems)
        self.problems = problems


class DatasetEmpty(ExperimentRuleError):
    code = "dataset_empty"
    status = 409

    def __init__(self, dataset_id: str) -> None:
        super().__init__(
            f"dataset {dataset_id} has no uploaded examples; upload a file before starting",
            {"dataset_id": dataset_id},
        )


class ExperimentRunning(ExperimentRuleError):
    code = "experiment_running"
    status = 409

    def __init__(self, experiment_id: str, run_number: int, status: str) -> None:
        super().__init__(
            f"run {run_number} of experiment {experiment_id} is still {status}; "
            "wait for it or start with ?force=true",
            {"experiment_id": experiment_id, "run_number": run_number, "status": status},
        )


class ExperimentArchived(ExperimentRuleError):
    code = "experiment_archived"
    status = 409

    def __init__(self, experiment_id: str) -> None:
        super().__init__(
            f"experiment {experiment_id} is archived; set its status to active or inactive to run it",
            {"experiment_id": experiment_id},
        )
