"""Prompts over HTTP on real MongoDB and Kafka: CRUD, versions, labels, render, diff, concurrency,
idempotency, tenancy, the events on the prompt stream and rebuilding the views."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent_registry.prompts.domain import prompt_stream
from agent_registry.prompts.store import VIEWS as PROMPT_VIEWS
from ailab_contracts.topics import REGISTRY as REGISTRY_TOPIC
from tests.support.kafka import read_topic
from tests.support.service_app import wait_until_ready

from .conftest import Registry

pytestmark = pytest.mark.integration

CHAT = {
    "messages": [
        {"role": "system", "content": "You are a {{ tone }} support agent."},
        {"role": "user", "content": "Ticket from {{ customer_name }} ({{ priority }}): {{ ticket }}"},
    ],
    "variables": [
        {"name": "tone", "type": "string", "required": False, "default": "friendly"},
        {"name": "customer_name", "type": "string"},
        {"name": "priority", "type": "integer", "default": 3},
        {"name": "ticket", "type": "string", "description": "Ticket text"},
    ],
    "model_params": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 400, "stop": ["\n\n"]},
    "changelog": "first",
}


def base(tenant: str) -> str:
    return f"/v1/tenants/{tenant}/prompts"


async def new_prompt(registry: Registry, tenant: str, **body: Any) -> dict[str, Any]:
    return await registry.create(base(tenant), {"name": "Prompt", **body})


async def new_version(registry: Registry, tenant: str, prompt_id: str, **body: Any) -> dict[str, Any]:
    payload = body or {"template": "Hello {{ name }}", "variables": [{"name": "name"}]}
    return await registry.create(f"{base(tenant)}/{prompt_id}/versions", payload)


async def stream_events(registry: Registry, tenant: str, prompt_id: str) -> list[tuple[str, dict[str, Any]]]:
    events = await registry.runtime.store.read_stream(prompt_stream(tenant, prompt_id))
    return [(e.event_type, e.payload) for e in events]


def error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def test_prompt_lifecycle_filters_and_pagination(registry: Registry) -> None:
    tenant = registry.tenant()
    created = await registry.client.post(
        base(tenant), json={"name": " Support ", "tags": ["cx", "cx"], "metadata": {"team": "cx"}}
    )
    assert created.status_code == 201, created.text
    prompt = created.json()
    assert (
        created.headers["etag"] == '"1"' and created.headers["location"] == f"{base(tenant)}/{prompt['id']}"
    )
    assert prompt["id"].startswith("pmt_")
    assert (prompt["name"], prompt["tags"], prompt["labels"], prompt["latest_version"], prompt["status"]) == (
        "Support",
        ["cx"],
        {},
        None,
        "active",
    )
    path = f"{base(tenant)}/{prompt['id']}"
    got = await registry.client.get(path)
    assert got.json() == prompt and got.headers["etag"] == '"1"'

    updated = await registry.client.put(
        path, json={"description": "d", "status": "inactive"}, headers={"If-Match": '"1"'}
    )
    assert updated.status_code == 200 and updated.headers["etag"] == '"2"'
    assert (updated.json()["description"], updated.json()["status"]) == ("d", "inactive")
    stale = await registry.client.put(path, json={"name": "x"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and error(stale)["code"] == "precondition_failed"
    assert (await registry.client.delete(path, headers={"If-Match": '"1"'})).status_code == 412

    others = [await new_prompt(registry, tenant, name=f"P{i}", tags=["bulk"]) for i in range(4)]
    inactive = (await registry.client.get(base(tenant), params={"status": "inactive"})).json()["items"]
    assert [p["id"] for p in inactive] == [prompt["id"]]
    tagged = (await registry.client.get(base(tenant), params={"tag": "bulk"})).json()["items"]
    assert [p["id"] for p in tagged] == [p["id"] for p in others]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await registry.client.get(base(tenant), params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [prompt["id"], *(p["id"] for p in others)]
    assert (await registry.client.get(base(tenant), params={"limit": 0})).status_code == 422
    assert (await registry.client.get(base(tenant), params={"cursor": "%%%"})).status_code == 400

    assert (await registry.client.delete(path, headers={"If-Match": '"2"'})).status_code == 204
    assert (await registry.client.get(path)).status_code == 404
    assert (await registry.client.get(f"{path}/versions")).status_code == 404
    assert prompt["id"] not in [p["id"] for p in (await registry.client.get(base(tenant))).json()["items"]]
    assert [t for t, _ in await stream_events(registry, tenant, prompt["id"])] == [
        "registry.PromptCreated",
        "registry.PromptUpdated",
        "registry.PromptDeleted",
    ]


async def test_versions_create_list_and_get_by_number_label_or_latest(registry: Registry) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    versions = f"{base(tenant)}/{prompt['id']}/versions"
    first = await registry.client.post(versions, json={**CHAT, "labels": ["production"], "tags": ["v1"]})
    assert first.status_code == 201, first.text
    v1 = first.json()
    assert first.headers["location"] == f"{versions}/1" and first.headers["etag"] == '"3"'
    assert (v1["id"], v1["version"], v1["type"], v1["status"], v1["labels"], v1["warnings"]) == (
        f"{prompt['id']}:v1",
        1,
        "chat",
        "active",
        ["production", "latest"],
        [],
    )
    assert v1["messages"] == CHAT["messages"] and v1["template"] is None
    assert v1["variables"][0] == {
        "name": "tone",
        "type": "string",
        "required": False,
        "default": "friendly",
        "description": None,
    }
    assert v1["model_params"] == CHAT["model_params"]
    assert v1["artifact_path"] == f"tenants/{tenant}/prompts/{prompt['id']}/versions/1/"

    for i in range(2, 12):
        await new_version(
            registry, tenant, prompt["id"], template=f"Text {i} {{{{ x }}}}", variables=[{"name": "x"}]
        )
    current = (await registry.client.get(f"{base(tenant)}/{prompt['id']}")).json()
    assert (current["latest_version"], current["labels"], current["version"]) == (11, {"production": 1}, 13)

    numbers: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await registry.client.get(versions, params=params)).json()
        numbers += [v["version"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert numbers == list(range(1, 12)), "pages follow version numbers (10 after 9)"

    by_label = await registry.client.get(f"{versions}/production")
    assert (
        by_label.status_code == 200 and by_label.json()["version"] == 1 and by_label.headers["etag"] == '"13"'
    )
    latest = (await registry.client.get(f"{versions}/latest")).json()
    assert (latest["version"], latest["template"], latest["labels"]) == (11, "Text 11 {{ x }}", ["latest"])
    assert (await registry.client.get(f"{versions}/10")).json()["template"] == "Text 10 {{ x }}"
    for missing in ("12", "staging"):
        response = await registry.client.get(f"{versions}/{missing}")
        assert response.status_code == 404 and error(response)["code"] == "not_found"
    assert (await registry.client.get(f"{versions}/Bad!")).status_code == 422
    assert (await registry.client.get(f"{versions}/0")).status_code == 422


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"template": "Hi {{ name }} {{ extra }}", "variables": [{"name": "name"}]},
            [("undeclared_placeholder", ["body", "template"])],
        ),
        (
            {"template": "Hi {{ a }}", "variables": [{"name": "a"}, {"name": "bad-name"}]},
            [("invalid_variable_name", ["body", "variables", 1, "name"])],
        ),
        (
            {"template": "{{ n }}", "variables": [{"name": "n", "type": "integer", "default": "3"}]},
            [("invalid_default", ["body", "variables", 0, "default"])],
        ),
        (
            {"template": "x", "messages": [{"role": "user", "content": "y"}]},
            [("template_or_messages", ["body"])],
        ),
        ({"variables": []}, [("template_or_messages", ["body"])]),
        ({"template": "{{ os.system('x') }}"}, [("invalid_placeholder", ["body", "template"])]),
        (
            {"messages": [{"role": "user", "content": "ok"}, {"role": "user", "content": "{{ open"}]},
            [("malformed_placeholder", ["body", "messages", 1, "content"])],
        ),
        ({"template": "x", "model_params": {"a.b": 1}}, [("invalid_key", ["body", "model_params", "a.b"])]),
    ],
)
async def test_invalid_versions_are_422_invalid_prompt(
    registry: Registry, body: dict[str, Any], expected: list[tuple[str, list[Any]]]
) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    response = await registry.client.post(f"{base(tenant)}/{prompt['id']}/versions", json=body)
    assert response.status_code == 422, response.text
    assert error(response)["code"] == "invalid_prompt"
    assert [(p["code"], p["loc"]) for p in error(response)["details"]] == expected
    assert (await registry.client.get(f"{base(tenant)}/{prompt['id']}")).json()["latest_version"] is None


async def test_unused_variables_are_warnings_and_schema_errors_are_422(registry: Registry) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    versions = f"{base(tenant)}/{prompt['id']}/versions"
    created = await new_version(
        registry,
        tenant,
        prompt["id"],
        template="{{ a }}",
        variables=[{"name": "a"}, {"name": "b", "required": False}],
    )
    assert [(w["code"], w["name"], w["loc"]) for w in created["warnings"]] == [
        ("unused_variable", "b", ["body", "variables", 1])
    ]
    assert (await registry.client.get(f"{versions}/1")).json()["warnings"] == created["warnings"]
    bad_role = await registry.client.post(versions, json={"messages": [{"role": "robot", "content": "x"}]})
    assert bad_role.status_code == 422 and error(bad_role)["code"] == "validation_error"
    assert (await registry.client.post(versions, json={"template": "x", "flow": 1})).status_code == 422


async def test_labels_move_and_remove_with_events(registry: Registry) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    pid = prompt["id"]
    await new_version(registry, tenant, pid)
    await new_version(registry, tenant, pid)
    labels = f"{base(tenant)}/{pid}/labels"

    moved = await registry.client.put(
        f"{labels}/production", json={"version": 1}, headers={"If-Match": '"3"'}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["labels"] == {"production": 1} and moved.headers["etag"] == '"4"'
    again = await registry.client.put(f"{labels}/production", json={"version": 2})
    assert again.json()["labels"] == {"production": 2} and again.headers["etag"] == '"5"'
    noop = await registry.client.put(f"{labels}/production", json={"version": 2})
    assert noop.status_code == 200 and noop.headers["etag"] == '"5"'
    await registry.client.put(f"{labels}/staging", json={"version": 2})
    v2 = (await registry.client.get(f"{base(tenant)}/{pid}/versions/2")).json()
    assert v2["labels"] == ["production", "staging", "latest"]

    stale = await registry.client.put(f"{labels}/canary", json={"version": 1}, headers={"If-Match": '"3"'})
    assert stale.status_code == 412
    for label, body, status, code in (
        ("latest", {"version": 1}, 422, "invalid_label"),
        ("Prod", {"version": 1}, 422, "invalid_label"),
        ("canary", {"version": 3}, 422, "invalid_reference"),
        ("canary", {"version": 0}, 422, "validation_error"),
        ("canary", {}, 422, "validation_error"),
    ):
        response = await registry.client.put(f"{labels}/{label}", json=body)
        assert (response.status_code, error(response)["code"]) == (status, code), (label, body)

    removed = await registry.client.delete(f"{labels}/staging", headers={"If-Match": '"6"'})
    assert removed.status_code == 204
    missing = await registry.client.delete(f"{labels}/staging")
    assert missing.status_code == 404 and error(missing)["code"] == "not_found"
    assert (await registry.client.delete(f"{labels}/latest")).status_code == 422
    assert (await registry.client.get(f"{base(tenant)}/{pid}/versions/staging")).status_code == 404
    assert (await registry.client.get(f"{base(tenant)}/{pid}")).json()["labels"] == {"production": 2}

    events = await stream_events(registry, tenant, pid)
    assert [t for t, _ in events] == [
        "registry.PromptCreated",
        "registry.PromptVersionCreated",
        "registry.PromptVersionCreated",
        "registry.PromptLabelMoved",
        "registry.PromptLabelMoved",
        "registry.PromptLabelMoved",
        "registry.PromptLabelRemoved",
    ]
    assert [(p["label"], p["version"], p["previous_version"]) for t, p in events[3:6]] == [
        ("production", 1, None),
        ("production", 2, 1),
        ("staging", 2, None),
    ]
    assert events[6][1] == {
        "prompt_id": pid,
        "label": "staging",
        "previous_version": 2,
        "removed_by": "usr_test",
    }


async def test_render_success_defaults_and_every_422(registry: Registry) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    pid = prompt["id"]
    await registry.create(f"{base(tenant)}/{pid}/versions", {**CHAT, "labels": ["production"]})
    await new_version(
        registry,
        tenant,
        pid,
        template="Sum: {{ data }} / {{ ok }}",
        variables=[
            {"name": "data", "type": "json"},
            {"name": "ok", "type": "boolean", "default": False},
        ],
    )
    render = f"{base(tenant)}/{pid}/versions/production/render"

    done = await registry.client.post(
        render, json={"variables": {"customer_name": "Ada", "ticket": "Refund?"}}
    )
    assert done.status_code == 200, done.text
    assert done.json() == {
        "prompt_id": pid,
        "version": 1,
        "rendered": [
            {"role": "system", "content": "You are a friendly support agent."},
            {"role": "user", "content": "Ticket from Ada (3): Refund?"},
        ],
        "variables_used": {"tone": "friendly", "customer_name": "Ada", "priority": 3, "ticket": "Refund?"},
        "model_params": CHAT["model_params"],
    }
    text = await registry.client.post(
        f"{base(tenant)}/{pid}/versions/latest/render", json={"variables": {"data": {"n": [1, 2]}}}
    )
    assert text.json()["rendered"] == 'Sum: {"n": [1, 2]} / false' and text.json()["version"] == 2

    cases = [
        ({"ticket": "x"}, {"missing": ["customer_name"], "undeclared": [], "type_errors": []}),
        (
            {"customer_name": "A", "ticket": "x", "colour": "red", "size": 1},
            {"missing": [], "undeclared": ["colour", "size"], "type_errors": []},
        ),
        (
            {"customer_name": 42, "ticket": "x", "priority": "high"},
            {
                "missing": [],
                "undeclared": [],
                "type_errors": [
                    {
                        "name": "customer_name",
                        "expected": "string",
                        "got": "integer",
                        "message": "expected string, got integer",
                    },
                    {
                        "name": "priority",
                        "expected": "integer",
                        "got": "string",
                        "message": "expected integer, got string",
                    },
                ],
            },
        ),
    ]
    for supplied, details in cases:
        response = await registry.client.post(render, json={"variables": supplied})
        assert response.status_code == 422, response.text
        assert error(response)["code"] == "invalid_variables"
        assert error(response)["details"] == details
    assert (await registry.client.post(render, json={"variables": []})).status_code == 422
    assert (await registry.client.post(f"{base(tenant)}/{pid}/versions/9/render", json={})).status_code == 404
    assert [t for t, _ in await stream_events(registry, tenant, pid)][
        -1
    ] == "registry.PromptVersionCreated", "rendering records nothing"


async def test_diff_between_numbers_and_labels(registry: Registry) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    pid = prompt["id"]
    await new_version(
        registry,
        tenant,
        pid,
        template="Summarize:\n{{ text }}\nBe short.",
        variables=[{"name": "text"}, {"name": "style", "required": False, "default": "plain"}],
        model_params={"model": "m", "temperature": 0.7},
        labels=["production"],
    )
    await new_version(
        registry,
        tenant,
        pid,
        template="Summarize for {{ audience }}:\n{{ text }}\nBe short.",
        variables=[{"name": "text", "description": "input"}, {"name": "audience"}],
        model_params={"model": "m", "temperature": 0.2, "top_p": 0.9},
    )
    diff = await registry.client.get(f"{base(tenant)}/{pid}/diff", params={"from": "production", "to": "2"})
    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (body["from"], body["to"]) == ({"ref": "production", "version": 1}, {"ref": "2", "version": 2})
    assert body["text_diff"] == (
        f"--- {pid}:v1\n+++ {pid}:v2\n@@ -1,3 +1,3 @@\n-Summarize:\n+Summarize for {{{{ audience }}}}:\n"
        " {{ text }}\n Be short.\n"
    )
    assert (body["kind_changed"], body["text_changed"]) == (False, True)
    assert [v["name"] for v in body["variables"]["added"]] == ["audience"]
    assert [v["name"] for v in body["variables"]["removed"]] == ["style"]
    assert body["variables"]["changed"] == [
        {"name": "text", "changes": {"description": {"from": None, "to": "input"}}}
    ]
    assert body["model_params"] == {
        "added": {"top_p": 0.9},
        "removed": {},
        "changed": {"temperature": {"from": 0.7, "to": 0.2}},
    }
    same = (
        await registry.client.get(f"{base(tenant)}/{pid}/diff", params={"from": "latest", "to": "2"})
    ).json()
    assert same["text_diff"] == "" and same["variables"] == {"added": [], "removed": [], "changed": []}
    for params in ({"from": "1", "to": "3"}, {"from": "staging", "to": "1"}):
        response = await registry.client.get(f"{base(tenant)}/{pid}/diff", params=params)
        assert response.status_code == 404 and error(response)["code"] == "not_found"
    assert (await registry.client.get(f"{base(tenant)}/{pid}/diff", params={"from": "1"})).status_code == 422


async def test_archived_prompts_take_no_versions_and_deleted_ones_deprecate_theirs(
    registry: Registry,
) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    pid = prompt["id"]
    await new_version(registry, tenant, pid)
    await registry.client.put(f"{base(tenant)}/{pid}", json={"status": "archived"})
    refused = await registry.client.post(f"{base(tenant)}/{pid}/versions", json={"template": "x"})
    assert refused.status_code == 409 and error(refused)["code"] == "prompt_archived"

    stored = await registry.runtime.db["prompt_versions"].find_one(
        {"tenant_id": tenant, "prompt_id": pid, "version": 1}
    )
    assert stored is not None and (stored["_id"], stored["status"], stored["prompt_deleted"]) == (
        f"{pid}:v1",
        "active",
        False,
    )
    assert (await registry.client.delete(f"{base(tenant)}/{pid}")).status_code == 204
    stored = await registry.runtime.db["prompt_versions"].find_one(
        {"tenant_id": tenant, "prompt_id": pid, "version": 1}
    )
    assert stored is not None and (stored["status"], stored["prompt_deleted"]) == ("deprecated", True)
    for path in (f"{pid}/versions/1", f"{pid}/diff?from=1&to=1"):
        assert (await registry.client.get(f"{base(tenant)}/{path}")).status_code == 404
    assert (await registry.client.post(f"{base(tenant)}/{pid}/versions/1/render", json={})).status_code == 404
    assert (
        await registry.client.put(f"{base(tenant)}/{pid}/labels/a", json={"version": 1})
    ).status_code == 404


async def test_idempotency_keys_replay_creates(registry: Registry) -> None:
    tenant = registry.tenant()
    first = await registry.client.post(
        base(tenant), json={"name": "Once"}, headers={"Idempotency-Key": "p-1"}
    )
    again = await registry.client.post(
        base(tenant), json={"name": "Once"}, headers={"Idempotency-Key": "p-1"}
    )
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len((await registry.client.get(base(tenant))).json()["items"]) == 1
    reused = await registry.client.post(
        base(tenant), json={"name": "Other"}, headers={"Idempotency-Key": "p-1"}
    )
    assert reused.status_code == 422 and error(reused)["code"] == "idempotency_key_reused"

    versions = f"{base(tenant)}/{first.json()['id']}/versions"
    bad = await registry.client.post(
        versions, json={"template": "{{ x }}"}, headers={"Idempotency-Key": "v-1"}
    )
    assert bad.status_code == 422, "a refused request frees its key"
    body = {"template": "{{ x }}", "variables": [{"name": "x"}]}
    v1 = await registry.client.post(versions, json=body, headers={"Idempotency-Key": "v-1"})
    replay = await registry.client.post(versions, json=body, headers={"Idempotency-Key": "v-1"})
    assert v1.status_code == replay.status_code == 201 and replay.json() == v1.json()
    assert (
        replay.headers["etag"] == v1.headers["etag"] and replay.headers["location"] == v1.headers["location"]
    )
    assert [v["version"] for v in (await registry.client.get(versions)).json()["items"]] == [1]


async def test_concurrent_version_creates_never_share_a_number(registry: Registry) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    versions = f"{base(tenant)}/{prompt['id']}/versions"
    responses = await asyncio.gather(
        *(registry.client.post(versions, json={"template": f"v{i}"}) for i in range(5))
    )
    assert all(r.status_code in (201, 409) for r in responses), [r.text for r in responses]
    numbers = sorted(r.json()["version"] for r in responses if r.status_code == 201)
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    listed = (await registry.client.get(versions)).json()["items"]
    assert [v["version"] for v in listed] == numbers


async def test_tenants_never_see_each_other(registry: Registry) -> None:
    owner, intruder = registry.tenant(), registry.tenant()
    prompt = await new_prompt(registry, owner)
    pid = prompt["id"]
    await new_version(registry, owner, pid)
    for method, path, body in (
        ("GET", pid, None),
        ("PUT", pid, {"name": "stolen"}),
        ("DELETE", pid, None),
        ("GET", f"{pid}/versions", None),
        ("GET", f"{pid}/versions/1", None),
        ("POST", f"{pid}/versions", {"template": "x"}),
        ("POST", f"{pid}/versions/1/render", {"variables": {"name": "x"}}),
        ("GET", f"{pid}/diff?from=1&to=1", None),
        ("PUT", f"{pid}/labels/prod", {"version": 1}),
        ("DELETE", f"{pid}/labels/prod", None),
    ):
        response = await registry.client.request(method, f"{base(intruder)}/{path}", json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert (await registry.client.get(base(intruder))).json()["items"] == []
    assert (await registry.client.get(f"{base(owner)}/{pid}")).json()["name"] == "Prompt"


async def test_demo_tenant_has_a_sample_prompt(registry: Registry) -> None:
    version = await registry.client.get(f"{base('demo')}/pmt_demo_support_answer/versions/production")
    assert version.status_code == 200, version.text
    rendered = await registry.client.post(
        f"{base('demo')}/pmt_demo_support_answer/versions/production/render",
        json={"variables": {"customer_name": "Ada", "ticket": "Where is my order?"}},
    )
    assert rendered.json()["rendered"][1] == {
        "role": "user",
        "content": "Ticket from Ada:\nWhere is my order?",
    }


async def test_rebuilt_prompt_views_equal_the_live_ones(registry: Registry) -> None:
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant, tags=["r"])
    pid = prompt["id"]
    await registry.create(f"{base(tenant)}/{pid}/versions", {**CHAT, "labels": ["production"]})
    await new_version(registry, tenant, pid)
    await registry.client.put(f"{base(tenant)}/{pid}/labels/staging", json={"version": 2})
    await registry.client.delete(f"{base(tenant)}/{pid}/labels/production")
    await registry.client.put(f"{base(tenant)}/{pid}", json={"description": "changed"})
    gone = await new_prompt(registry, tenant)
    await new_version(registry, tenant, gone["id"])
    await registry.client.delete(f"{base(tenant)}/{gone['id']}")

    async def snapshot() -> dict[str, list[dict[str, Any]]]:
        db = registry.runtime.db
        return {name: [d async for d in db[name].find({}).sort("_id", 1)] for name in PROMPT_VIEWS}

    before = await snapshot()
    assert any(d["_id"] == f"{gone['id']}:v1" and d["prompt_deleted"] for d in before["prompt_versions"])
    await registry.runtime.projector.rebuild()
    after = await snapshot()
    assert after == before


async def test_prompt_and_tool_events_reach_the_registry_topic_in_order(registry: Registry) -> None:
    await wait_until_ready(registry.client, "registry")
    deadline = asyncio.get_running_loop().time() + 60
    tenant = registry.tenant()
    prompt = await new_prompt(registry, tenant)
    await new_version(registry, tenant, prompt["id"])
    await registry.client.put(f"{base(tenant)}/{prompt['id']}/labels/production", json={"version": 1})
    await registry.client.delete(f"{base(tenant)}/{prompt['id']}/labels/production")
    tool = await registry.create(
        f"/v1/tenants/{tenant}/tools", {"name": "calc", "kind": "builtin", "builtin": "calculator"}
    )
    expected = [
        "registry.PromptCreated",
        "registry.PromptVersionCreated",
        "registry.PromptLabelMoved",
        "registry.PromptLabelRemoved",
        "registry.ToolCreated",
    ]
    topic = registry.settings.topic(REGISTRY_TOPIC)
    mine: list[dict[str, Any]] = []
    while len(mine) < len(expected):
        assert asyncio.get_running_loop().time() < deadline, f"only {mine} arrived"
        records = await read_topic(registry.settings.kafka_bootstrap_servers, topic, until=1, timeout_s=10)
        mine = [json.loads(r.value or b"{}") for r in records if r.key == tenant.encode()]
    assert [e["event_type"] for e in mine] == expected
    assert [e["stream_id"] for e in mine] == [f"prompt:{tenant}:{prompt['id']}"] * 4 + [
        f"tool:{tenant}:{tool['id']}"
    ]
    assert [e["stream_version"] for e in mine] == [1, 2, 3, 4, 1]
