"""Experiment execution: runs a `registry.ExperimentStarted` (a target on every example of a pinned
dataset file, scored by evaluators) and reports it on `ailab.runs.events` as
`runs.ExperimentRunStarted`, one `runs.ExperimentExampleScored` per example and
`runs.ExperimentRunCompleted` with the summary.

Modules: `ports` (what the lead wires), `evaluators` + `judge` (scoring), `summary` (statistics),
`writer` (the single writer of a run stream), `runner` (one run), `executor` (the runs of this
process: background tasks, cancel, resume), `consumer` (Kafka handler + Runtime wiring),
`registry_http` (dataset examples and judge prompts over the registry's internal API), `mongo`
(event store adapters), `memory` (fakes).
"""

from .consumer import (
    CONSUMER_GROUP,
    EXECUTOR_KEY,
    EXPERIMENTS_CONSUMER,
    build_experiment_executor,
    experiments_handler,
)
from .executor import ExperimentExecutor
from .judge import ProviderJudge, parse_judge_answer
from .ports import (
    EventRecorder,
    ExampleSource,
    ExperimentRunError,
    Judge,
    JudgePrompts,
    JudgeReply,
    JudgeRequest,
    OpenRunScanner,
    RunRequestStore,
    StreamConflict,
    StreamReader,
    TargetError,
    TargetResult,
    TargetRunner,
)
from .registry_http import RegistryExampleSource, RegistryJudgePrompts
from .runner import ExperimentRunner

__all__ = [
    "CONSUMER_GROUP",
    "EXECUTOR_KEY",
    "EXPERIMENTS_CONSUMER",
    "EventRecorder",
    "ExampleSource",
    "ExperimentExecutor",
    "ExperimentRunError",
    "ExperimentRunner",
    "Judge",
    "JudgePrompts",
    "JudgeReply",
    "JudgeRequest",
    "OpenRunScanner",
    "ProviderJudge",
    "RegistryExampleSource",
    "RegistryJudgePrompts",
    "RunRequestStore",
    "StreamConflict",
    "StreamReader",
    "TargetError",
    "TargetResult",
    "TargetRunner",
    "build_experiment_executor",
    "experiments_handler",
    "parse_judge_answer",
]
