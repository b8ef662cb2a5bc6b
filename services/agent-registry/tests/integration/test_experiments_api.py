"""Experiments over HTTP on real MongoDB and Kafka: CRUD, lists, If-Match, Idempotency-Key, every
422, references to core agent versions and to prompt-version / dataset views, tenant isolation,
and starting a run (`registry.ExperimentStarted` on the registry topic)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from tests.support.kafka import read_topic
from tests.support.service_app import wait_until_ready

from .conftest import Registry

pytestmark = pytest.mark.integration

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
EVALUATORS: list[dict[str, Any]] = [
    {"name": "exact", "type": "exact_match", "config": {"case_sensitive": False}},
    {"name": "label", "type": "regex", "config": {"pattern": "^(billing|tech)$"}},
]


async def seed(registry: Registry, tenant: str, *, rows: int = 3) -> dict[str, Any]:
    """An agent version (through the core routes), a prompt version and a dataset (view documents,
    as the prompts and datasets areas write them)."""
    agent = await registry.agent(tenant)
    await registry.version(tenant, agent["id"])
    db = registry.runtime.db
    prompt_id, dataset_id, empty_id = f"pmt_{tenant}", f"dst_{tenant}", f"dst_empty_{tenant}"
    await db["prompt_versions"].insert_one(
        {
            "_id": f"{prompt_id}:v1",
            "tenant_id": tenant,
            "prompt_id": prompt_id,
            "version": 1,
            "status": "active",
        }
    )
    await db["datasets"].insert_many(
        [
            {
                "_id": dataset_id,
                "tenant_id": tenant,
                "status": "active",
                "row_count": rows,
                "upload_id": f"upl_{tenant}",
                "content_sha256": SHA,
            },
            {"_id": empty_id, "tenant_id": tenant, "status": "active", "row_count": 0, "upload_id": None},
        ]
    )
    return {"agent_id": agent["id"], "prompt_id": prompt_id, "dataset_id": dataset_id, "empty_id": empty_id}


def body_for(refs: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "name": "Triage accuracy",
        "target": {"type": "agent_version", "agent_id": refs["agent_id"], "version": 1},
        "dataset_id": refs["dataset_id"],
        "evaluators": EVALUATORS,
        **overrides,
    }


async def test_experiment_lifecycle(registry: Registry) -> None:
    tenant = registry.tenant()
    refs = await seed(registry, tenant)
    base = f"/v1/tenants/{tenant}/experiments"
    created = await registry.client.post(
        base, json=body_for(refs, tags=["nightly", "nightly"], parameters={"model": "gpt-4o"}, concurrency=8)
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("exp_")
    assert created.headers["etag"] == '"1"' and created.headers["location"] == f"{base}/{body['id']}"
    assert (body["tags"], body["parameters"], body["concurrency"], body["expected_output_field"]) == (
        ["nightly"],
        {"model": "gpt-4o"},
        8,
        "expected",
    )
    assert body["evaluators"][1] == {
        "name": "label",
        "type": "regex",
        "config": {"pattern": "^(billing|tech)$", "ignore_case": False, "full_match": False},
    }
    assert body["config_path"] == f"tenants/{tenant}/experiments/{body['id']}/config.json"
    assert (body["status"], body["last_run_number"], body["created_by"], body["version"]) == (
        "active",
        None,
        "usr_test",
        1,
    )

    got = await registry.client.get(f"{base}/{body['id']}")
    assert got.status_code == 200 and got.json() == body and got.headers["etag"] == '"1"'

    updated = await registry.client.put(
        f"{base}/{body['id']}",
        json={
            "target": {"type": "prompt_version", "prompt_id": refs["prompt_id"], "version": 1},
            "status": "inactive",
        },
        headers={"If-Match": '"1"'},
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == '"2"'
    assert updated.json()["target"] == {
        "type": "prompt_version",
        "prompt_id": refs["prompt_id"],
        "version": 1,
    }
    assert updated.json()["status"] == "inactive" and updated.json()["evaluators"] == body["evaluators"]
    assert (await registry.client.get(f"{base}/{body['id']}")).json() == updated.json()

    stale = await registry.client.put(f"{base}/{body['id']}", json={"name": "x"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.json()["error"]["details"] == {"current_etag": '"2"'}

    noop = await registry.client.put(f"{base}/{body['id']}", json={"status": "inactive"})
    assert noop.status_code == 200 and noop.json()["version"] == 2

    missing = await registry.client.get(f"{base}/exp_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await registry.client.put(f"{base}/exp_nope", json={"name": "x"})).status_code == 404
    assert (await registry.client.post(f"{base}/exp_nope/start")).status_code == 404
    assert (await registry.client.get(f"{base}/exp_nope/status")).status_code == 404
    assert (await registry.client.get(f"{base}/exp_nope/results")).status_code == 404

    status = await registry.client.get(f"{base}/{body['id']}/status")
    assert status.status_code == 200
    assert status.json() | {"experiment_id": None} == {
        "experiment_id": None,
        "run_number": None,
        "status": "not_started",
        "examples_total": None,
        "examples_scored": 0,
        "examples_failed": 0,
        "requested_at": None,
        "requested_by": None,
        "started_at": None,
        "completed_at": None,
        "summary": None,
        "error": None,
    }
    results = (await registry.client.get(f"{base}/{body['id']}/results")).json()
    assert (results["status"], results["run_number"], results["items"], results["next_cursor"]) == (
        "not_started",
        None,
        [],
        None,
    )


async def test_list_filters_and_pagination(registry: Registry) -> None:
    tenant = registry.tenant()
    refs = await seed(registry, tenant)
    base = f"/v1/tenants/{tenant}/experiments"
    other_dataset = f"dst_other_{tenant}"
    await registry.runtime.db["datasets"].insert_one(
        {"_id": other_dataset, "tenant_id": tenant, "status": "active", "row_count": 1, "upload_id": "u"}
    )
    a = await registry.create(base, body_for(refs, tags=["nightly"]))
    b = await registry.create(
        base,
        body_for(
            refs,
            dataset_id=other_dataset,
            target={"type": "prompt_version", "prompt_id": refs["prompt_id"], "version": 1},
        ),
    )
    c = await registry.create(base, body_for(refs, tags=["nightly", "smoke"]))
    await registry.client.put(f"{base}/{c['id']}", json={"status": "archived"})

    async def ids(**params: Any) -> list[str]:
        response = await registry.client.get(base, params=params)
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["items"]]

    assert await ids() == [a["id"], b["id"], c["id"]]
    assert await ids(tag="nightly") == [a["id"], c["id"]]
    assert await ids(status="archived") == [c["id"]]
    assert await ids(dataset_id=other_dataset) == [b["id"]]
    assert await ids(agent_id=refs["agent_id"]) == [a["id"], c["id"]]
    assert await ids(prompt_id=refs["prompt_id"]) == [b["id"]]
    page1 = (await registry.client.get(base, params={"limit": 2})).json()
    assert [e["id"] for e in page1["items"]] == [a["id"], b["id"]] and page1["next_cursor"]
    page2 = (await registry.client.get(base, params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    assert [e["id"] for e in page2["items"]] == [c["id"]] and page2["next_cursor"] is None
    assert (await registry.client.get(base, params={"limit": 0})).status_code == 422
    assert (await registry.client.get(base, params={"status": "running"})).status_code == 422
    assert (await registry.client.get(base, params={"cursor": "!!"})).status_code == 400


async def test_create_is_idempotent_per_key(registry: Registry) -> None:
    tenant = registry.tenant()
    refs = await seed(registry, tenant)
    base = f"/v1/tenants/{tenant}/experiments"
    first = await registry.client.post(base, json=body_for(refs), headers={"Idempotency-Key": "exp-1"})
    again = await registry.client.post(base, json=body_for(refs), headers={"Idempotency-Key": "exp-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    other = await registry.client.post(
        base, json=body_for(refs, name="Other"), headers={"Idempotency-Key": "exp-1"}
    )
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len((await registry.client.get(base)).json()["items"]) == 1


@pytest.mark.parametrize(
    ("change", "loc", "needle"),
    [
        (
            {"evaluators": [{"name": "re", "type": "regex", "config": {"pattern": "(unclosed"}}]},
            ["body", "evaluators", 0, "config", "pattern"],
            "does not compile",
        ),
        (
            {"evaluators": [EVALUATORS[0], {"name": "lev", "type": "levenshtein", "config": {}}]},
            ["body", "evaluators", 1],
            "levenshtein",
        ),
        (
            {"evaluators": [{"name": "n", "type": "numeric_tolerance", "config": {"rel_tolerance": -0.1}}]},
            ["body", "evaluators", 0, "config", "rel_tolerance"],
            "greater than or equal",
        ),
        (
            {"evaluators": [{"name": "j", "type": "llm_judge", "config": {"model": "m"}}]},
            ["body", "evaluators", 0, "config"],
            "exactly one",
        ),
        ({"evaluators": []}, ["body", "evaluators"], "at least 1"),
        (
            {"target": {"type": "agent_version", "agent_id": "agt_x"}},
            ["body", "target", "version"],
            "required",
        ),
        ({"target": {"type": "dataset"}}, ["body", "target"], "dataset"),
    ],
)
async def test_an_invalid_definition_is_422_naming_the_field(
    registry: Registry, change: dict[str, Any], loc: list[Any], needle: str
) -> None:
    tenant = registry.tenant()
    refs = await seed(registry, tenant)
    base = f"/v1/tenants/{tenant}/experiments"
    response = await registry.client.post(base, json=body_for(refs, **change))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_experiment"
    assert error["details"][0]["loc"] == loc and needle in error["details"][0]["msg"]
    assert error["request_id"]
    created = await registry.create(base, body_for(refs))
    on_update = await registry.client.put(f"{base}/{created['id']}", json=change)
    assert on_update.status_code == 422 and on_update.json()["error"]["details"][0]["loc"] == loc
    assert (await registry.client.get(f"{base}/{created['id']}")).json() == created


async def test_schema_and_value_errors_are_422_too(registry: Registry) -> None:
    tenant = registry.tenant()
    refs = await seed(registry, tenant)
    base = f"/v1/tenants/{tenant}/experiments"
    for change in ({"concurrency": 0}, {"concurrency": 65}, {"name": ""}, {"surprise": 1}, {"target": "agt"}):
        response = await registry.client.post(base, json=body_for(refs, **change))
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error", change
    bad_params = await registry.client.post(base, json=body_for(refs, parameters={"$where": "1"}))
    assert bad_params.status_code == 422 and bad_params.json()["error"]["code"] == "invalid_value"
    assert bad_params.json()["error"]["details"][0]["loc"] == ["body", "parameters", "$where"]
    assert (await registry.client.get(base)).json()["items"] == []


async def test_unknown_references_are_422_naming_the_field(registry: Registry) -> None:
    tenant = registry.tenant()
    refs = await seed(registry, tenant)
    base = f"/v1/tenants/{tenant}/experiments"
    deleted_dataset = f"dst_deleted_{tenant}"
    await registry.runtime.db["datasets"].insert_one(
        {"_id": deleted_dataset, "tenant_id": tenant, "status": "deleted", "row_count": 2, "upload_id": "u"}
    )
    judge = {
        "name": "judge",
        "type": "llm_judge",
        "config": {"prompt_id": refs["prompt_id"], "prompt_version": 2, "model": "m"},
    }
    cases = [
        ({"target": {"type": "agent_version", "agent_id": refs["agent_id"], "version": 2}}, "target"),
        ({"target": {"type": "agent_version", "agent_id": "agt_nope", "version": 1}}, "target"),
        ({"target": {"type": "prompt_version", "prompt_id": refs["prompt_id"], "version": 7}}, "target"),
        ({"dataset_id": "dst_nope"}, "dataset_id"),
        ({"dataset_id": deleted_dataset}, "dataset_id"),
        ({"evaluators": [EVALUATORS[0], judge]}, "evaluators[1].config.prompt_id"),
    ]
    for change, field in cases:
        response = await registry.client.post(base, json=body_for(refs, **change))
        assert response.status_code == 422, (change, response.text)
        assert response.json()["error"]["code"] == "invalid_reference"
        assert response.json()["error"]["details"]["field"] == field
    await registry.version(tenant, refs["agent_id"])  # version 2 exists now
    assert (await registry.client.post(base, json=body_for(refs, **cases[0][0]))).status_code == 201
    await registry.client.delete(f"/v1/tenants/{tenant}/agents/{refs['agent_id']}")
    gone = await registry.client.post(base, json=body_for(refs))
    assert gone.status_code == 422 and gone.json()["error"]["details"]["field"] == "target"


async def test_tenants_are_isolated(registry: Registry) -> None:
    a, b = registry.tenant(), registry.tenant()
    refs_a = await seed(registry, a)
    await seed(registry, b)
    created = await registry.create(f"/v1/tenants/{a}/experiments", body_for(refs_a))
    for path in ("", "/status", "/results"):
        response = await registry.client.get(f"/v1/tenants/{b}/experiments/{created['id']}{path}")
        assert response.status_code == 404, path
    assert (
        await registry.client.put(f"/v1/tenants/{b}/experiments/{created['id']}", json={"name": "x"})
    ).status_code == 404
    assert (
        await registry.client.post(f"/v1/tenants/{b}/experiments/{created['id']}/start")
    ).status_code == 404
    assert (await registry.client.get(f"/v1/tenants/{b}/experiments")).json()["items"] == []
    # b cannot point at a's agent version or dataset
    response = await registry.client.post(f"/v1/tenants/{b}/experiments", json=body_for(refs_a))
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "target"


async def test_start_records_the_run_and_publishes_it(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    tenant = registry.tenant()
    refs = await seed(registry, tenant, rows=5)
    base = f"/v1/tenants/{tenant}/experiments"
    empty = await registry.create(base, body_for(refs, dataset_id=refs["empty_id"]))
    refused = await registry.client.post(f"{base}/{empty['id']}/start")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "dataset_empty"

    created = await registry.create(base, body_for(refs, parameters={"temperature": 0}, concurrency=2))
    start = f"{base}/{created['id']}/start"
    first = await registry.client.post(start, headers={"Idempotency-Key": "run-1"})
    assert first.status_code == 202, first.text
    run = first.json()
    assert (run["run_number"], run["status"], run["examples_total"], run["examples_scored"]) == (
        1,
        "pending",
        5,
        0,
    )
    assert run["requested_by"] == "usr_test" and run["requested_at"] and run["started_at"] is None
    assert first.headers["location"] == f"{base}/{created['id']}/status?run=1"
    replay = await registry.client.post(start, headers={"Idempotency-Key": "run-1"})
    assert (
        replay.status_code == 202 and replay.json() == run and replay.headers["idempotent-replayed"] == "true"
    )

    status = (await registry.client.get(f"{base}/{created['id']}/status")).json()
    assert {k: status[k] for k in ("run_number", "status", "examples_total")} == {
        "run_number": 1,
        "status": "pending",
        "examples_total": 5,
    }
    busy = await registry.client.post(start)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "experiment_running"
    assert busy.json()["error"]["details"] == {
        "experiment_id": created["id"],
        "run_number": 1,
        "status": "pending",
    }
    forced = await registry.client.post(start, params={"force": "true"}, headers={"Idempotency-Key": "run-2"})
    assert forced.status_code == 202 and forced.json()["run_number"] == 2
    experiment = await registry.client.get(f"{base}/{created['id']}")
    assert (experiment.json()["last_run_number"], experiment.headers["etag"]) == (2, '"3"')

    topic = registry.settings.topic(REGISTRY_TOPIC)
    started: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + 60
    while len(started) < 2:
        assert asyncio.get_running_loop().time() < deadline, f"only {started} arrived"
        records = await read_topic(registry.settings.kafka_bootstrap_servers, topic, until=1, timeout_s=5)
        # delivery is at-least-once: consumers dedupe by event_id, and so does this reader
        unique = {
            event["event_id"]: event
            for event in (json.loads(r.value or b"{}") for r in records if r.key == tenant.encode())
            if event["event_type"] == "registry.ExperimentStarted"
            and event["payload"]["experiment_id"] == created["id"]
        }
        started = list(unique.values())
    assert [e["payload"]["run_number"] for e in started] == [1, 2], "the replayed start recorded nothing"
    payload = started[0]["payload"]
    assert (
        started[0]["stream_id"] == f"experiment:{tenant}:{created['id']}"
        and started[0]["schema_version"] == 1
    )
    assert payload["target"] == {"type": "agent_version", "agent_id": refs["agent_id"], "version": 1}
    assert payload["evaluators"] == created["evaluators"]
    assert (payload["parameters"], payload["concurrency"], payload["expected_output_field"]) == (
        {"temperature": 0},
        2,
        "expected",
    )
    assert (
        payload["dataset_id"],
        payload["upload_id"],
        payload["content_sha256"],
        payload["example_count"],
    ) == (
        refs["dataset_id"],
        f"upl_{tenant}",
        SHA,
        5,
    )
    assert (payload["requested_by"], payload["supersedes_run_number"]) == ("usr_test", None)
    assert started[1]["payload"]["supersedes_run_number"] == 1

    archived = await registry.create(base, body_for(refs))
    await registry.client.put(f"{base}/{archived['id']}", json={"status": "archived"})
    response = await registry.client.post(f"{base}/{archived['id']}/start")
    assert response.status_code == 409 and response.json()["error"]["code"] == "experiment_archived"


async def test_concurrent_starts_never_share_a_run_number(registry: Registry) -> None:
    tenant = registry.tenant()
    refs = await seed(registry, tenant)
    base = f"/v1/tenants/{tenant}/experiments"
    created = await registry.create(base, body_for(refs))
    start = f"{base}/{created['id']}/start"
    responses = await asyncio.gather(
        *(registry.client.post(start, params={"force": "true"}) for _ in range(8))
    )
    accepted = [r.json()["run_number"] for r in responses if r.status_code == 202]
    assert {r.status_code for r in responses} <= {202, 409}
    assert all(r.json()["error"]["code"] == "conflict" for r in responses if r.status_code == 409)
    assert accepted and sorted(accepted) == list(range(1, len(accepted) + 1))
    assert (await registry.client.get(f"{base}/{created['id']}")).json()["last_run_number"] == len(accepted)
    runs = await registry.runtime.db["experiment_runs"].count_documents({"experiment_id": created["id"]})
    assert runs == len(accepted)
