"""MongoDB side of experiments: collection layout, indexes, the views port and the references port.

Collections (every document carries `tenant_id`; every query filters by it first):
- `experiments`: one per experiment, the fold of its stream (projection, `_version` guarded).
- `experiment_runs`: one per started run, written once by the ExperimentStarted projection.
- `experiment_run_progress`: one per run the executor reported on; single writer (the runs.*
  consumer), compare-and-swap on `_rev`, ordered by the executor's stream_version.
- `experiment_results`: insert-only ledger, `_id` = `{experiment_id}:{run_number}:{example_index}`.
The last two are fed from Kafka, not from this service's event store, so rebuilding the
projections leaves them alone.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from ailab_runtime.errors import ApiError
from ailab_runtime.pagination import decode_cursor, encode_cursor, keyset_page

from ..adapters.documents import entity_from_doc, entity_to_doc, state_from_doc, utc
from ..adapters.mongo_lists import STATUS_AND_TAGS, ensure_list_indexes
from .model import DatasetRef, Experiment, RunProgress, RunRequest
from .ports import ExperimentFilter

Db = AsyncDatabase[dict[str, Any]]

EXPERIMENTS = "experiments"
EXPERIMENT_RUNS = "experiment_runs"
RUN_PROGRESS = "experiment_run_progress"
RESULTS = "experiment_results"
PROJECTED_VIEWS = (EXPERIMENTS, EXPERIMENT_RUNS)

# Views of other parts of the registry, read only (see the references port below).
AGENTS = "agents"
AGENT_VERSIONS = "agent_versions"
PROMPTS = "prompts"
PROMPT_VERSIONS = "prompt_versions"
DATASETS = "datasets"


def run_key(experiment_id: str, run_number: int) -> str:
    """`_id` of a run document; zero-padded so that `_id` order is run order."""
    return f"{experiment_id}:{run_number:010d}"


def result_key(experiment_id: str, run_number: int, example_index: int) -> str:
    return f"{experiment_id}:{run_number}:{example_index}"


async def ensure_indexes(db: Db) -> None:
    await ensure_list_indexes(
        db[EXPERIMENTS],
        {
            **STATUS_AND_TAGS,
            "tenant_dataset": "dataset_id",
            "tenant_target_agent": "target.agent_id",
            "tenant_target_prompt": "target.prompt_id",
        },
    )
    run_fields = [("tenant_id", ASCENDING), ("experiment_id", ASCENDING), ("run_number", ASCENDING)]
    await db[EXPERIMENT_RUNS].create_index(run_fields, name="tenant_experiment_run")
    await db[RUN_PROGRESS].create_index(run_fields, name="tenant_experiment_run")
    await db[RESULTS].create_index([*run_fields, ("example_index", ASCENDING)], name="tenant_run_example")


# --- documents ----------------------------------------------------------------------------------------


def experiment_to_doc(experiment: Experiment) -> dict[str, Any]:
    return entity_to_doc(experiment)


def experiment_from_doc(doc: dict[str, Any]) -> Experiment:
    return entity_from_doc(Experiment, doc)


def run_request_to_doc(run: RunRequest) -> dict[str, Any]:
    body = {k: v for k, v in asdict(run).items() if k != "version"}
    # `status` is the registry's fact only (requested = pending); the executor's reports live apart
    return {
        "_id": run_key(run.experiment_id, run.run_number),
        **body,
        "status": "pending",
        "_version": run.version,
    }


def run_request_from_doc(doc: dict[str, Any]) -> RunRequest:
    run: RunRequest = state_from_doc(RunRequest, doc, version=doc["_version"])
    return run


def progress_to_doc(progress: RunProgress, rev: int) -> dict[str, Any]:
    body = {k: v for k, v in asdict(progress).items() if k != "position"}
    return {
        "_id": run_key(progress.experiment_id, progress.run_number),
        **body,
        "_version": progress.position,
        "_rev": rev,
    }


def progress_from_doc(doc: dict[str, Any]) -> RunProgress:
    progress: RunProgress = state_from_doc(RunProgress, doc, position=doc["_version"])
    return progress


_RESULT_FIELDS = (
    "example_index",
    "run_id",
    "output",
    "scores",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "error",
    "scored_at",
)


def result_from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: utc(doc.get(name)) for name in _RESULT_FIELDS}


# --- views -----------------------------------------------------------------------------------------------


def _experiment_query(tenant_id: str, flt: ExperimentFilter) -> dict[str, Any]:
    query: dict[str, Any] = {"tenant_id": tenant_id}
    if flt.status:
        query["status"] = flt.status
    if flt.tag:
        query["tags"] = flt.tag
    if flt.dataset_id:
        query["dataset_id"] = flt.dataset_id
    if flt.agent_id:
        query["target.agent_id"] = flt.agent_id
    if flt.prompt_id:
        query["target.prompt_id"] = flt.prompt_id
    return query


def _index_after(cursor: str | None) -> int | None:
    after = decode_cursor(cursor)
    if after is None:
        return None
    if not after.isascii() or not after.isdigit():
        raise ApiError(400, "invalid_cursor", "cursor is not valid", {"cursor": cursor})
    return int(after)


class MongoExperimentViews:
    """Implements `ExperimentViews` over the four experiment collections."""

    def __init__(self, db: Db) -> None:
        self._experiments = db[EXPERIMENTS]
        self._runs = db[EXPERIMENT_RUNS]
        self._progress = db[RUN_PROGRESS]
        self._results = db[RESULTS]

    async def experiment(self, tenant_id: str, experiment_id: str) -> Experiment | None:
        doc = await self._experiments.find_one({"tenant_id": tenant_id, "_id": experiment_id})
        return experiment_from_doc(doc) if doc else None

    async def experiments(self, tenant_id: str, flt: ExperimentFilter) -> tuple[list[Experiment], str | None]:
        docs, cursor = await keyset_page(
            self._experiments, _experiment_query(tenant_id, flt), flt.cursor, flt.limit
        )
        return [experiment_from_doc(d) for d in docs], cursor

    async def run_request(self, tenant_id: str, experiment_id: str, run_number: int) -> RunRequest | None:
        doc = await self._runs.find_one({"tenant_id": tenant_id, "_id": run_key(experiment_id, run_number)})
        return run_request_from_doc(doc) if doc else None

    async def run_progress(self, tenant_id: str, experiment_id: str, run_number: int) -> RunProgress | None:
        doc = await self._progress.find_one(
            {"tenant_id": tenant_id, "_id": run_key(experiment_id, run_number)}
        )
        return progress_from_doc(doc) if doc else None

    async def result_counts(self, tenant_id: str, experiment_id: str, run_number: int) -> tuple[int, int]:
        run = {"tenant_id": tenant_id, "experiment_id": experiment_id, "run_number": run_number}
        scored = await self._results.count_documents({**run, "failed": False})
        failed = await self._results.count_documents({**run, "failed": True})
        return scored, failed

    async def results(
        self, tenant_id: str, experiment_id: str, run_number: int, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query: dict[str, Any] = {
            "tenant_id": tenant_id,
            "experiment_id": experiment_id,
            "run_number": run_number,
        }
        after = _index_after(cursor)
        if after is not None:
            query["example_index"] = {"$gt": after}
        docs = [d async for d in self._results.find(query).sort("example_index", ASCENDING).limit(limit + 1)]
        next_cursor = encode_cursor(str(docs[limit - 1]["example_index"])) if len(docs) > limit else None
        return [result_from_doc(d) for d in docs[:limit]], next_cursor


class MongoExperimentReferences:
    """Implements `ExperimentReferences` by reading, never writing, the views other areas maintain:
    `agents` + `agent_versions` (core: `number` is the version), `prompts` + `prompt_versions`
    (`prompt_id`, `version`, `status`) and `datasets` (`_id`, `status`, `row_count`, `upload_id`,
    `content_sha256`)."""

    def __init__(self, db: Db) -> None:
        self._agents = db[AGENTS]
        self._agent_versions = db[AGENT_VERSIONS]
        self._prompts = db[PROMPTS]
        self._prompt_versions = db[PROMPT_VERSIONS]
        self._datasets = db[DATASETS]

    async def agent_version_exists(self, tenant_id: str, agent_id: str, version: int) -> bool:
        agent = await self._agents.find_one({"tenant_id": tenant_id, "_id": agent_id}, {"status": 1})
        if agent is None or agent.get("status") == "deleted":
            return False
        found = await self._agent_versions.find_one(
            {"tenant_id": tenant_id, "agent_id": agent_id, "number": version}, {"_id": 1}
        )
        return found is not None

    async def prompt_version_exists(self, tenant_id: str, prompt_id: str, version: int) -> bool:
        prompt = await self._prompts.find_one({"tenant_id": tenant_id, "_id": prompt_id}, {"status": 1})
        if prompt is not None and prompt.get("status") == "deleted":
            return False
        found = await self._prompt_versions.find_one(
            {"tenant_id": tenant_id, "prompt_id": prompt_id, "version": version}, {"status": 1}
        )
        return found is not None and found.get("status") != "deleted"

    async def dataset(self, tenant_id: str, dataset_id: str) -> DatasetRef | None:
        doc = await self._datasets.find_one({"tenant_id": tenant_id, "_id": dataset_id})
        if doc is None:
            return None
        return DatasetRef(
            id=dataset_id,
            status=doc.get("status"),
            row_count=doc.get("row_count"),
            upload_id=doc.get("upload_id"),
            content_sha256=doc.get("content_sha256"),
        )
