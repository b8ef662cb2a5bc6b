"""Datasets over HTTP on real MongoDB: CRUD, streamed upload and download, examples, schema.json,
refused uploads that leave nothing behind, replacement, and tenant isolation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent_registry.datasets.storage import EXAMPLES, FILES_BUCKET, UPLOADS

from .conftest import Registry

pytestmark = pytest.mark.integration

JSONL_TYPE = {"Content-Type": "application/x-ndjson"}
CSV_TYPE = {"Content-Type": "text/csv"}


def base(tenant: str) -> str:
    return f"/v1/tenants/{tenant}/datasets"


async def new_dataset(registry: Registry, tenant: str, **body: Any) -> dict[str, Any]:
    return await registry.create(base(tenant), {"name": "Questions", **body})


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


async def chunked(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def upload(
    registry: Registry, tenant: str, dataset_id: str, data: bytes, headers: dict[str, str], params: str = ""
) -> Any:
    return await registry.client.post(
        f"{base(tenant)}/{dataset_id}/upload{params}", content=chunked(data), headers=headers
    )


async def stored(registry: Registry, tenant: str, dataset_id: str) -> dict[str, set[str]]:
    """Upload ids that have examples, a file document, chunks or an in-progress marker."""
    db = registry.runtime.db
    examples = {
        d["upload_id"] async for d in db[EXAMPLES].find({"tenant_id": tenant, "dataset_id": dataset_id})
    }
    files = {
        d["_id"]
        async for d in db[f"{FILES_BUCKET}.files"].find(
            {"metadata.tenant_id": tenant, "metadata.dataset_id": dataset_id}
        )
    }
    chunks = {
        d["files_id"]
        async for d in db[f"{FILES_BUCKET}.chunks"].find({"files_id": {"$in": [*examples, *files]}})
    }
    markers = {d["_id"] async for d in db[UPLOADS].find({"tenant_id": tenant, "dataset_id": dataset_id})}
    return {"examples": examples, "files": files, "chunks": chunks, "markers": markers}


async def test_create_list_get_update_delete(registry: Registry) -> None:
    tenant = registry.tenant()
    created = await new_dataset(registry, tenant, description="d", tags=["eval", " eval "], metadata={"k": 1})
    assert created["id"].startswith("dst_")
    assert (created["tags"], created["status"], created["version"]) == (["eval"], "active", 1)
    assert (created["row_count"], created["size_bytes"], created["upload_id"], created["schema"]) == (
        0,
        0,
        None,
        None,
    )
    other = await new_dataset(registry, tenant, name="Other")

    got = await registry.client.get(f"{base(tenant)}/{created['id']}")
    assert got.status_code == 200 and got.json() == created and got.headers["etag"] == '"1"'

    listed = (await registry.client.get(base(tenant), params={"limit": 1})).json()
    assert [d["id"] for d in listed["items"]] == [created["id"]] and listed["next_cursor"]
    rest = (await registry.client.get(base(tenant), params={"cursor": listed["next_cursor"]})).json()
    assert [d["id"] for d in rest["items"]] == [other["id"]] and rest["next_cursor"] is None
    tagged = (await registry.client.get(base(tenant), params={"tag": "eval"})).json()["items"]
    assert [d["id"] for d in tagged] == [created["id"]]

    stale = await registry.client.put(
        f"{base(tenant)}/{created['id']}", json={"name": "x"}, headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "precondition_failed"
    updated = await registry.client.put(
        f"{base(tenant)}/{created['id']}",
        json={"status": "inactive", "name": "Renamed"},
        headers={"If-Match": '"1"'},
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["status"], updated.json()["name"], updated.headers["etag"]) == (
        "inactive",
        "Renamed",
        '"2"',
    )
    inactive = (await registry.client.get(base(tenant), params={"status": "inactive"})).json()["items"]
    assert [d["id"] for d in inactive] == [created["id"]]

    bad = await registry.client.put(f"{base(tenant)}/{created['id']}", json={"metadata": {"a.b": 1}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_value"
    unknown = await registry.client.put(f"{base(tenant)}/{created['id']}", json={"format": "csv"})
    assert unknown.status_code == 422

    assert (await registry.client.delete(f"{base(tenant)}/{created['id']}")).status_code == 204
    assert (await registry.client.get(f"{base(tenant)}/{created['id']}")).status_code == 404
    assert (await registry.client.delete(f"{base(tenant)}/{created['id']}")).status_code == 404
    listed_after = (await registry.client.get(base(tenant))).json()["items"]
    assert [d["id"] for d in listed_after] == [other["id"]]


async def test_create_is_idempotent_with_a_key(registry: Registry) -> None:
    tenant = registry.tenant()
    first = await registry.client.post(base(tenant), json={"name": "A"}, headers={"Idempotency-Key": "k1"})
    again = await registry.client.post(base(tenant), json={"name": "A"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert first.headers["location"].endswith(f"/datasets/{first.json()['id']}")


async def test_jsonl_upload_download_examples_and_schema(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant, name="Support questions")
    rows = [{"question": f"q{i}", "answer": i, "extra": None if i % 2 else {"n": i}} for i in range(2345)]
    data = jsonl(rows)
    up = await upload(registry, tenant, dataset["id"], data, JSONL_TYPE)
    assert up.status_code == 200, up.text
    body = up.json()
    assert body["format"] == "jsonl" and body["row_count"] == 2345 and body["size_bytes"] == len(data)
    assert body["content_sha256"] == hashlib.sha256(data).hexdigest()
    assert body["upload_id"].startswith("upl_") and body["uploaded_by"] == "usr_test"
    assert body["version"] == 3 and up.headers["etag"] == '"3"'  # DatasetFileUploaded + UsageRecorded
    assert body["artifacts"] == [f"tenants/{tenant}/datasets/{dataset['id']}/schema.json"]
    assert body["schema"]["fields"] == [
        {"name": "question", "types": ["string"], "nullable": False, "required": True, "example": "q0"},
        {"name": "answer", "types": ["integer"], "nullable": False, "required": True, "example": 0},
        {"name": "extra", "types": ["object"], "nullable": True, "required": True, "example": {"n": 0}},
    ]
    assert (await registry.client.get(f"{base(tenant)}/{dataset['id']}")).json() == body

    # download: the exact bytes, streamed, with size, name and digest
    async with registry.client.stream("GET", f"{base(tenant)}/{dataset['id']}/download") as reply:
        assert reply.status_code == 200
        digest = hashlib.sha256()
        async for chunk in reply.aiter_raw():
            digest.update(chunk)
        assert digest.hexdigest() == body["content_sha256"]
        assert reply.headers["content-length"] == str(len(data))
        assert reply.headers["content-type"] == "application/x-ndjson"
        assert reply.headers["etag"] == f'"{body["content_sha256"]}"'
        assert reply.headers["content-disposition"].startswith(
            'attachment; filename="Support questions.jsonl"'
        )
    cached = await registry.client.get(
        f"{base(tenant)}/{dataset['id']}/download", headers={"If-None-Match": f'"{body["content_sha256"]}"'}
    )
    assert cached.status_code == 304 and cached.content == b""

    # examples: every row once, in file order, page by page
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = (await registry.client.get(f"{base(tenant)}/{dataset['id']}/examples", params=params)).json()
        assert all(item["upload_id"] == body["upload_id"] for item in page["items"])
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 12
    assert [e["index"] for e in seen] == list(range(2345))
    assert [e["data"] for e in seen] == rows

    one = await registry.client.get(f"{base(tenant)}/{dataset['id']}/examples/1234")
    assert one.status_code == 200 and one.json() == {
        "index": 1234,
        "upload_id": body["upload_id"],
        "data": rows[1234],
    }
    past = await registry.client.get(f"{base(tenant)}/{dataset['id']}/examples/2345")
    assert past.status_code == 404 and past.json()["error"]["code"] == "not_found"
    negative = await registry.client.get(f"{base(tenant)}/{dataset['id']}/examples/-1")
    assert negative.status_code == 422

    schema = await registry.client.get(f"{base(tenant)}/{dataset['id']}/files/schema.json")
    assert schema.status_code == 200
    assert schema.json() == {
        "dataset_id": dataset["id"],
        "upload_id": body["upload_id"],
        "format": "jsonl",
        "row_count": 2345,
        **body["schema"],
    }
    other = await registry.client.get(f"{base(tenant)}/{dataset['id']}/files/config.json")
    assert other.status_code == 404
    assert await stored(registry, tenant, dataset["id"]) == {
        "examples": {body["upload_id"]},
        "files": {body["upload_id"]},
        "chunks": {body["upload_id"]},
        "markers": set(),
    }


async def test_csv_upload_with_format_from_query_or_content_type(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant, name="Grades")
    data = b'id,name,score,passed\r\n1,"Doe, Jane",9.5,true\r\n2,"multi\r\nline",,false\r\n'
    up = await upload(
        registry, tenant, dataset["id"], data, {"Content-Type": "application/octet-stream"}, "?format=csv"
    )
    assert up.status_code == 200, up.text
    body = up.json()
    assert (body["format"], body["row_count"]) == ("csv", 2)
    assert {f["name"]: f["types"] for f in body["schema"]["fields"]} == {
        "id": ["integer"],
        "name": ["string"],
        "score": ["number"],
        "passed": ["boolean"],
    }
    examples = (await registry.client.get(f"{base(tenant)}/{dataset['id']}/examples")).json()["items"]
    assert [e["data"] for e in examples] == [
        {"id": "1", "name": "Doe, Jane", "score": "9.5", "passed": "true"},
        {"id": "2", "name": "multi\r\nline", "score": "", "passed": "false"},
    ]
    download = await registry.client.get(f"{base(tenant)}/{dataset['id']}/download")
    assert download.content == data and download.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="Grades.csv"' in download.headers["content-disposition"]

    # the Content-Type names the format when no ?format= is given; an unknown one is refused
    again = await upload(
        registry, tenant, dataset["id"], b"a\n1\n", {"Content-Type": "text/csv; charset=utf-8"}
    )
    assert again.status_code == 200 and again.json()["row_count"] == 1
    unknown = await upload(registry, tenant, dataset["id"], b"a\n1\n", {"Content-Type": "application/pdf"})
    assert unknown.status_code == 415 and unknown.json()["error"]["code"] == "unsupported_media_type"
    bad_query = await upload(registry, tenant, dataset["id"], b"a\n1\n", CSV_TYPE, "?format=xlsx")
    assert bad_query.status_code == 422


async def test_a_broken_csv_row_is_refused_and_leaves_nothing_behind(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant)
    good = await upload(registry, tenant, dataset["id"], b"q,a\nx,1\ny,2\n", CSV_TYPE)
    assert good.status_code == 200
    previous = good.json()
    # 3,000 good rows (three insert batches stored before the error), then a row with 3 fields
    data = (
        b"q,a\n"
        + b"".join(b'"row %d\nspans two lines",%d\n' % (i, i) for i in range(3000))
        + b"bad,row,here\n"
    )
    refused = await upload(registry, tenant, dataset["id"], data, CSV_TYPE)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_dataset_row"
    assert error["details"] == {"line": 6002, "error": "row has 3 field(s); the header has 2"}
    assert "line 6002" in error["message"]
    # nothing of the refused upload is stored; the dataset still serves the previous file
    assert await stored(registry, tenant, dataset["id"]) == {
        "examples": {previous["upload_id"]},
        "files": {previous["upload_id"]},
        "chunks": {previous["upload_id"]},
        "markers": set(),
    }
    now = (await registry.client.get(f"{base(tenant)}/{dataset['id']}")).json()
    assert now == previous
    download = await registry.client.get(f"{base(tenant)}/{dataset['id']}/download")
    assert download.content == b"q,a\nx,1\ny,2\n"


@pytest.mark.parametrize(
    ("data", "line", "error"),
    [
        (b'{"a": 1}\n{"a": 2}\n[3]\n', 3, "a row must be a JSON object, not array"),
        (b'{"a": 1}\n{"a": }\n', 2, "not valid JSON"),
        (b'{"a": 1}\n{"$a": 2}\n', 2, "field name '$a' cannot start with '$'"),
        (b"", 1, "the file holds no rows"),
        (b'{"a": 1}\n{"a": 2}\n{"m": [[1, 2]]}\n', 3, "an array directly inside an array cannot be stored"),
    ],
)
async def test_bad_jsonl_is_refused_naming_the_line(
    registry: Registry, data: bytes, line: int, error: str
) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant)
    refused = await upload(registry, tenant, dataset["id"], data, JSONL_TYPE)
    assert refused.status_code == 422
    details = refused.json()["error"]["details"]
    assert details["line"] == line and error in details["error"]
    assert await stored(registry, tenant, dataset["id"]) == {
        "examples": set(),
        "files": set(),
        "chunks": set(),
        "markers": set(),
    }
    after = (await registry.client.get(f"{base(tenant)}/{dataset['id']}")).json()
    assert (after["upload_id"], after["version"]) == (None, 1)


async def test_a_reupload_replaces_the_file_and_deletes_the_old_one(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant)
    first = (
        await upload(registry, tenant, dataset["id"], jsonl([{"v": i} for i in range(1500)]), JSONL_TYPE)
    ).json()
    page = (await registry.client.get(f"{base(tenant)}/{dataset['id']}/examples", params={"limit": 2})).json()
    second_data = b"v,w\nnew,1\n"
    second = await upload(registry, tenant, dataset["id"], second_data, CSV_TYPE)
    assert second.status_code == 200
    body = second.json()
    assert body["upload_id"] != first["upload_id"]
    assert (body["format"], body["row_count"], body["version"]) == ("csv", 1, 5)
    examples = (await registry.client.get(f"{base(tenant)}/{dataset['id']}/examples")).json()
    assert examples == {
        "items": [{"index": 0, "upload_id": body["upload_id"], "data": {"v": "new", "w": "1"}}],
        "next_cursor": None,
    }
    # a cursor of the old file is refused rather than silently mixing two files
    stale = await registry.client.get(
        f"{base(tenant)}/{dataset['id']}/examples", params={"cursor": page["next_cursor"]}
    )
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "dataset_file_replaced"
    assert (await registry.client.get(f"{base(tenant)}/{dataset['id']}/download")).content == second_data
    schema = (await registry.client.get(f"{base(tenant)}/{dataset['id']}/files/schema.json")).json()
    assert schema["upload_id"] == body["upload_id"] and schema["format"] == "csv"
    # the old file and its examples are gone (the response's background task ran before it returned)
    assert await stored(registry, tenant, dataset["id"]) == {
        "examples": {body["upload_id"]},
        "files": {body["upload_id"]},
        "chunks": {body["upload_id"]},
        "markers": set(),
    }


async def test_deleting_a_dataset_deletes_its_file(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant)
    await upload(registry, tenant, dataset["id"], jsonl([{"a": 1}]), JSONL_TYPE)
    assert (
        await registry.client.delete(f"{base(tenant)}/{dataset['id']}", headers={"If-Match": '"3"'})
    ).status_code == 204
    for suffix in ("", "/download", "/examples", "/examples/0", "/files/schema.json"):
        reply = await registry.client.get(f"{base(tenant)}/{dataset['id']}{suffix}")
        assert reply.status_code == 404, suffix
    assert await stored(registry, tenant, dataset["id"]) == {
        "examples": set(),
        "files": set(),
        "chunks": set(),
        "markers": set(),
    }


async def test_reads_before_the_first_upload(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant)
    path = f"{base(tenant)}/{dataset['id']}"
    download = await registry.client.get(f"{path}/download")
    assert download.status_code == 404 and download.json()["error"]["code"] == "not_found"
    assert (await registry.client.get(f"{path}/examples")).json() == {"items": [], "next_cursor": None}
    assert (await registry.client.get(f"{path}/examples/0")).status_code == 404
    assert (await registry.client.get(f"{path}/files/schema.json")).status_code == 404
    bad_cursor = await registry.client.get(f"{path}/examples", params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["code"] == "invalid_cursor"


async def test_archived_datasets_accept_no_upload_and_if_match_guards_uploads(registry: Registry) -> None:
    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant)
    stale = await registry.client.post(
        f"{base(tenant)}/{dataset['id']}/upload",
        content=b'{"a": 1}\n',
        headers={**JSONL_TYPE, "If-Match": '"9"'},
    )
    assert stale.status_code == 412
    await registry.client.put(f"{base(tenant)}/{dataset['id']}", json={"status": "archived"})
    refused = await upload(registry, tenant, dataset["id"], b'{"a": 1}\n', JSONL_TYPE)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "dataset_archived"
    assert await stored(registry, tenant, dataset["id"]) == {
        "examples": set(),
        "files": set(),
        "chunks": set(),
        "markers": set(),
    }


async def test_tenants_never_see_each_others_datasets(registry: Registry) -> None:
    owner, intruder = registry.tenant(), registry.tenant()
    dataset = await new_dataset(registry, owner)
    await upload(registry, owner, dataset["id"], jsonl([{"secret": "s3cr3t"}]), JSONL_TYPE)
    path = f"{base(intruder)}/{dataset['id']}"
    for suffix in ("", "/download", "/examples/0", "/files/schema.json", "/examples"):
        reply = await registry.client.get(f"{path}{suffix}")
        assert reply.status_code == 404, suffix
        assert "s3cr3t" not in reply.text
    assert (await registry.client.get(base(intruder))).json()["items"] == []
    assert (await registry.client.put(path, json={"name": "mine"})).status_code == 404
    assert (await registry.client.delete(path)).status_code == 404
    hijack = await upload(registry, intruder, dataset["id"], jsonl([{"a": 1}]), JSONL_TYPE)
    assert hijack.status_code == 404
    owner_view = (await registry.client.get(f"{base(owner)}/{dataset['id']}")).json()
    assert (owner_view["name"], owner_view["row_count"], owner_view["version"]) == ("Questions", 1, 3)
    # every stored document of the owner's dataset carries the owner's tenant
    db = registry.runtime.db
    async for doc in db[EXAMPLES].find({"dataset_id": dataset["id"]}):
        assert doc["tenant_id"] == owner


async def test_requests_without_the_internal_token_are_refused(registry: Registry) -> None:
    tenant = registry.tenant()
    reply = await registry.client.get(base(tenant), headers={"X-Internal-Token": "wrong"})
    assert reply.status_code == 401


async def test_stored_files_are_plain_gridfs_files(registry: Registry) -> None:
    from gridfs.asynchronous import AsyncGridFSBucket

    tenant = registry.tenant()
    dataset = await new_dataset(registry, tenant)
    data = jsonl([{"n": i, "pad": "p" * 300} for i in range(3000)])  # about 4 chunks of 255 KiB
    body = (await upload(registry, tenant, dataset["id"], data, JSONL_TYPE)).json()
    bucket = AsyncGridFSBucket(registry.runtime.db, bucket_name=FILES_BUCKET)
    stream = await bucket.open_download_stream(body["upload_id"])
    assert await stream.read() == data
    assert stream.filename == "Questions.jsonl"
    assert stream.metadata == {
        "tenant_id": tenant,
        "dataset_id": dataset["id"],
        "upload_id": body["upload_id"],
        "format": "jsonl",
    }
