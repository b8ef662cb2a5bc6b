"""CRUD of projects, agents and versions, the files endpoint and input errors, over HTTP."""

from __future__ import annotations

import json

import pytest

from .conftest import FLOW, Registry

pytestmark = pytest.mark.integration


async def test_project_lifecycle(registry: Registry) -> None:
    tenant = registry.tenant()
    base = f"/v1/tenants/{tenant}/projects"
    created = await registry.client.post(
        base,
        json={"name": " Support ", "description": "d", "tags": ["cx", "cx", "bot"], "metadata": {"a": 1}},
    )
    assert created.status_code == 201
    body = created.json()
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"{base}/{body['id']}"
    assert body["id"].startswith("prj_")
    assert {k: body[k] for k in ("tenant_id", "name", "description", "status", "tags", "metadata")} == {
        "tenant_id": tenant,
        "name": "Support",
        "description": "d",
        "status": "active",
        "tags": ["cx", "bot"],
        "metadata": {"a": 1},
    }
    assert (body["created_by"], body["version"], body["created_at"]) == ("usr_test", 1, body["updated_at"])

    got = await registry.client.get(f"{base}/{body['id']}")
    assert got.status_code == 200 and got.json() == body and got.headers["etag"] == '"1"'

    updated = await registry.client.put(
        f"{base}/{body['id']}", json={"name": "Support 2", "status": "archived"}, headers={"If-Match": '"1"'}
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == '"2"'
    assert updated.json()["name"] == "Support 2" and updated.json()["status"] == "archived"
    assert updated.json()["tags"] == ["cx", "bot"] and updated.json()["version"] == 2
    assert (await registry.client.get(f"{base}/{body['id']}")).json() == updated.json()

    noop = await registry.client.put(f"{base}/{body['id']}", json={"name": "Support 2"})
    assert noop.status_code == 200 and noop.json()["version"] == 2

    listed = (await registry.client.get(base)).json()
    assert [p["id"] for p in listed["items"]] == [body["id"]] and listed["next_cursor"] is None

    deleted = await registry.client.delete(f"{base}/{body['id']}", headers={"If-Match": '"2"'})
    assert deleted.status_code == 204 and deleted.content == b""
    missing = await registry.client.get(f"{base}/{body['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert (await registry.client.get(base)).json()["items"] == []
    assert (await registry.client.put(f"{base}/{body['id']}", json={"name": "x"})).status_code == 404
    assert (await registry.client.delete(f"{base}/{body['id']}")).status_code == 404


async def test_agent_lifecycle_and_project_reference(registry: Registry) -> None:
    tenant = registry.tenant()
    project = await registry.project(tenant)
    base = f"/v1/tenants/{tenant}/agents"
    agent = await registry.agent(tenant, project_id=project["id"], type="workflow", tags=["triage"])
    assert agent["id"].startswith("agt_")
    assert (agent["project_id"], agent["type"], agent["latest_version"], agent["status"]) == (
        project["id"],
        "workflow",
        None,
        "active",
    )
    bad_ref = await registry.client.post(base, json={"name": "A", "project_id": "prj_nope"})
    assert bad_ref.status_code == 422 and bad_ref.json()["error"]["code"] == "invalid_reference"

    other = await registry.project(tenant)
    moved = await registry.client.put(
        f"{base}/{agent['id']}", json={"project_id": other["id"], "metadata": {"k": "v"}}
    )
    assert moved.status_code == 200
    assert moved.json()["project_id"] == other["id"] and moved.json()["metadata"] == {"k": "v"}
    bad_move = await registry.client.put(f"{base}/{agent['id']}", json={"project_id": "prj_nope"})
    assert bad_move.status_code == 422

    assert (await registry.client.delete(f"{base}/{agent['id']}")).status_code == 204
    assert (await registry.client.get(f"{base}/{agent['id']}")).status_code == 404
    assert (await registry.client.get(f"{base}/{agent['id']}/versions")).status_code == 404
    publish = await registry.client.post(f"{base}/{agent['id']}/versions", json={"flow_graph": FLOW})
    assert publish.status_code == 404


async def test_versions_publish_list_get_update_and_files(registry: Registry) -> None:
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    base = f"/v1/tenants/{tenant}/agents/{agent['id']}/versions"

    first = await registry.client.post(
        base, json={"flow_graph": FLOW, "config": {"temperature": 0.2}, "changelog": "first"}
    )
    assert first.status_code == 201, first.text
    v1 = first.json()
    assert first.headers["location"] == f"{base}/1" and first.headers["etag"] == '"2"'
    assert (v1["version"], v1["status"], v1["agent_id"], v1["changelog"], v1["stream_version"]) == (
        1,
        "active",
        agent["id"],
        "first",
        2,
    )
    assert v1["flow_graph"]["nodes"][1] == FLOW["nodes"][1]
    assert v1["artifacts"] == [
        f"tenants/{tenant}/agents/{agent['id']}/versions/1/flow-graph.json",
        f"tenants/{tenant}/agents/{agent['id']}/versions/1/config.json",
    ]
    v2 = await registry.version(tenant, agent["id"], config={"temperature": 0.7})
    v3 = await registry.version(tenant, agent["id"])
    assert [v1["version"], v2["version"], v3["version"]] == [1, 2, 3]

    got_agent = (await registry.client.get(f"/v1/tenants/{tenant}/agents/{agent['id']}")).json()
    assert got_agent["latest_version"] == 3 and got_agent["version"] == 4

    listed = (await registry.client.get(base)).json()
    assert [v["version"] for v in listed["items"]] == [1, 2, 3]
    got = await registry.client.get(f"{base}/1")
    assert got.status_code == 200 and got.json() == v1 and got.headers["etag"] == '"2"'

    deprecated = await registry.client.put(
        f"{base}/1", json={"status": "deprecated", "changelog": "superseded"}, headers={"If-Match": '"2"'}
    )
    assert deprecated.status_code == 200, deprecated.text
    assert deprecated.json()["status"] == "deprecated" and deprecated.json()["changelog"] == "superseded"
    assert deprecated.headers["etag"] == '"5"'
    assert deprecated.json()["flow_graph"] == v1["flow_graph"]
    only_active = (await registry.client.get(base, params={"status": "active"})).json()
    assert [v["version"] for v in only_active["items"]] == [2, 3]

    immutable = await registry.client.put(f"{base}/2", json={"flow_graph": FLOW})
    assert immutable.status_code == 422
    assert "publish a new version" in json.dumps(immutable.json()["error"]["details"])

    flow = await registry.client.get(f"{base}/2/files/flow-graph.json")
    assert flow.status_code == 200 and flow.headers["content-type"].startswith("application/json")
    assert (
        flow.json()["nodes"] == v2["flow_graph"]["nodes"]
        and flow.json()["edges"] == v2["flow_graph"]["edges"]
    )
    config = await registry.client.get(f"{base}/2/files/config.json")
    assert config.status_code == 200 and config.json() == {"temperature": 0.7}

    for path in (f"{base}/2/files/secrets.json", f"{base}/9/files/config.json", f"{base}/9"):
        response = await registry.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert (await registry.client.put(f"{base}/9", json={"status": "active"})).status_code == 404
    assert (await registry.client.get(f"{base}/abc")).status_code == 422
    assert (await registry.client.get(f"/v1/tenants/{tenant}/agents/agt_nope/versions")).status_code == 404
    unknown = await registry.client.post(
        f"/v1/tenants/{tenant}/agents/agt_nope/versions", json={"flow_graph": FLOW}
    )
    assert unknown.status_code == 404


async def test_archived_agents_accept_no_new_versions(registry: Registry) -> None:
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    path = f"/v1/tenants/{tenant}/agents/{agent['id']}"
    assert (await registry.client.put(path, json={"status": "archived"})).status_code == 200
    refused = await registry.client.post(f"{path}/versions", json={"flow_graph": FLOW})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "agent_archived"


async def test_invalid_flow_graphs_are_422_with_every_problem(registry: Registry) -> None:
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    base = f"/v1/tenants/{tenant}/agents/{agent['id']}/versions"

    dangling = {"nodes": [{"id": "a", "type": "llm"}], "edges": [{"source": "a", "target": "ghost"}]}
    response = await registry.client.post(base, json={"flow_graph": dangling})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_flow_graph"
    assert error["details"] == [
        {
            "code": "dangling_edge",
            "message": error["details"][0]["message"],
            "loc": ["flow_graph", "edges", 0, "target"],
            "node_id": "ghost",
        },
    ]

    unknown_type = {"nodes": [{"id": "a", "type": "teleport"}]}
    response = await registry.client.post(base, json={"flow_graph": unknown_type})
    assert response.status_code == 422
    assert [d["code"] for d in response.json()["error"]["details"]] == ["unknown_node_type"]

    everything = {
        "nodes": [{"id": "i", "type": "input"}, {"id": "i", "type": "input"}, {"id": "x", "type": "bogus"}],
        "edges": [{"source": "nowhere", "target": "i"}],
    }
    response = await registry.client.post(base, json={"flow_graph": everything})
    assert sorted(d["code"] for d in response.json()["error"]["details"]) == [
        "dangling_edge",
        "duplicate_node_id",
        "multiple_input_nodes",
        "unknown_node_type",
    ]
    empty = await registry.client.post(base, json={"flow_graph": {"nodes": []}})
    assert empty.status_code == 422 and empty.json()["error"]["details"][0]["code"] == "no_nodes"

    shapeless = await registry.client.post(base, json={"flow_graph": {"nodes": [{"type": "llm"}]}})
    assert shapeless.status_code == 422 and shapeless.json()["error"]["code"] == "validation_error"
    assert shapeless.json()["error"]["details"]

    versions = (await registry.client.get(base)).json()["items"]
    assert versions == [], "no invalid graph may be stored"


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "p", "metadata": {"a": NaN}}',
        '{"name": "p", "metadata": {"$set": 1}}',
        '{"name": "p", "metadata": {"a.b": 1}}',
        '{"name": "p", "metadata": {"big": 99999999999999999999999}}',
        '{"name": "p", "unknown": 1}',
        '{"name": ""}',
        '{"name": "p", "tags": [1]}',
        "not json",
        "[]",
    ],
)
async def test_bad_input_is_422_never_500(registry: Registry, raw: str) -> None:
    tenant = registry.tenant()
    response = await registry.client.post(
        f"/v1/tenants/{tenant}/projects", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] in {"validation_error", "invalid_value"}
    assert (await registry.client.get(f"/v1/tenants/{tenant}/projects")).json()["items"] == []


async def test_bad_config_values_and_query_parameters(registry: Registry) -> None:
    tenant = registry.tenant()
    agent = await registry.agent(tenant)
    response = await registry.client.post(
        f"/v1/tenants/{tenant}/agents/{agent['id']}/versions",
        content='{"flow_graph": ' + json.dumps(FLOW) + ', "config": {"t": Infinity}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_value"
    for params in ({"limit": 0}, {"limit": 201}, {"status": "deleted"}, {"cursor": "%%%"}):
        response = await registry.client.get(f"/v1/tenants/{tenant}/agents", params=params)
        assert response.status_code in (400, 422), params


async def test_openapi_documents_routes_and_errors(registry: Registry) -> None:
    spec = (await registry.client.get("/openapi.json")).json()
    put = spec["paths"]["/v1/tenants/{tenant_id}/agents/{agent_id}"]["put"]
    assert {"401", "404", "409", "412", "422"} <= set(put["responses"])
    assert put["responses"]["412"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    post = spec["paths"]["/v1/tenants/{tenant_id}/projects"]["post"]
    assert {"ETag", "Location"} <= set(post["responses"]["201"]["headers"])
    assert "ProjectCreate" in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["ProjectCreate"]["additionalProperties"] is False
