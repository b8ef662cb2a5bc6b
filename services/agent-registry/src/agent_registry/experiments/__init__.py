"""Experiments: definitions (a target evaluated on a dataset by evaluators), start requests that
freeze the definition and pin the dataset file, and each run's status and per-example results as
the run-executor reports them on `ailab.runs.events`."""

from ailab_runtime.service import ConsumerSpec

from ..features import Feature
from .api import ROUTERS, install
from .consumer import CONSUMER_GROUP, EVENT_TYPES, results_handler
from .mongo import ensure_indexes
from .projections import experiment_projections

FEATURE = Feature(
    name="experiments",
    routers=ROUTERS,
    projections=experiment_projections,
    indexes=ensure_indexes,
    consumers=(
        ConsumerSpec(
            topics=["ailab.runs.events"],
            group=CONSUMER_GROUP,
            handler_factory=results_handler,
            event_types=set(EVENT_TYPES),
        ),
    ),
    openapi_tags=(
        {
            "name": "experiments",
            "description": "Experiments: a target (agent or prompt version) evaluated on a dataset by "
            "evaluators; runs, their status and per-example results.",
        },
    ),
    setup=install,
)
