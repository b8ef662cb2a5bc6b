"""The consumer of `registry.ExperimentStarted` and the wiring of experiment execution into a
`Runtime`.

Wiring (bootstrap.py)::

    def wire(runtime: Runtime) -> None:
        build_experiment_executor(
            runtime,
            target=MyTargetRunner(...),                      # flow engine / prompt + provider
            source=RegistryExampleSource(settings.registry_url, settings.internal_token),
            judge=ProviderJudge(provider_registry),
            judge_prompts=RegistryJudgePrompts(settings.registry_url, settings.internal_token),
        )

    SPEC = ServiceSpec(..., wire=wire, consumers=[EXPERIMENTS_CONSUMER, ...])

The handler records the durable acceptance (`runs.ExperimentRunStarted`) and returns; the run goes
on as a background task of the `ExperimentExecutor` (see `executor.py`). When the runtime builds
the handler (once Kafka is reachable) the executor starts resuming runs that were accepted but not
completed; `Runtime.stop` stops the runs of this process without completing them.
"""

from __future__ import annotations

from pydantic import BaseModel

from ailab_contracts import EventEnvelope, topics
from ailab_contracts.events.experiments import ExperimentStarted
from ailab_runtime.consumer import Handler
from ailab_runtime.service import ConsumerSpec, Runtime

from .executor import ExperimentExecutor
from .mongo import MongoOpenRunScanner, MongoRunRequests, RuntimeEventRecorder
from .ports import ExampleSource, Judge, JudgePrompts, TargetRunner
from .runner import ExperimentRunner

CONSUMER_GROUP = "run-executor.experiments"
EVENT_TYPES = {"registry.ExperimentStarted"}
EXECUTOR_KEY = "experiment_executor"


def build_experiment_executor(
    runtime: Runtime,
    *,
    target: TargetRunner,
    source: ExampleSource,
    judge: Judge | None = None,
    judge_prompts: JudgePrompts | None = None,
    example_timeout_s: float | None = None,
    max_batch: int = 50,
) -> ExperimentExecutor:
    """The executor over the runtime's event store, kept in `runtime.extras["experiment_executor"]`;
    it is stopped first when the runtime stops (before anything it uses is closed)."""
    recorder = RuntimeEventRecorder(runtime)
    runner = ExperimentRunner(
        recorder=recorder,
        reader=recorder,
        source=source,
        target=target,
        judge=judge,
        judge_prompts=judge_prompts,
        registry=runtime.registry,
        max_batch=max_batch,
        example_timeout_s=example_timeout_s,
    )
    executor = ExperimentExecutor(
        runner, MongoRunRequests(runtime.db), MongoOpenRunScanner(runtime.db), runtime.registry
    )
    runtime.extras[EXECUTOR_KEY] = executor
    runtime.closers.insert(0, executor.stop)
    for port in (source, judge_prompts):
        close = getattr(port, "aclose", None)
        if close is not None:
            runtime.closers.append(close)
    return executor


def experiments_handler(runtime: Runtime) -> Handler:
    """Handler factory for `EXPERIMENTS_CONSUMER` (needs `build_experiment_executor` in `wire`)."""
    executor: ExperimentExecutor = runtime.extras[EXECUTOR_KEY]
    executor.start()

    async def handle(envelope: EventEnvelope, event: BaseModel) -> None:
        if isinstance(event, ExperimentStarted):
            await executor.accept(envelope, event)

    return handle


EXPERIMENTS_CONSUMER = ConsumerSpec(
    topics=[topics.REGISTRY],
    group=CONSUMER_GROUP,
    handler_factory=experiments_handler,
    event_types=EVENT_TYPES,
)
