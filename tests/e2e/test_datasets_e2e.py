"""Datasets end to end through the gateway: a 50 MB JSONL file streams up and back byte-identical
while the registry's peak memory stays small; a broken CSV row is refused naming its line."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from tests.e2e.conftest import System
from tests.e2e.helpers import client, eventually, new_tenant_with_admin

pytestmark = pytest.mark.e2e

FILE_BYTES = 50 * 1024 * 1024
PEAK_RSS_LIMIT_MB = 200


def write_jsonl(path: Path, size: int) -> str:
    """A JSONL file of about `size` bytes (support-ticket-like rows of about 1 KB); returns its sha256."""
    digest = hashlib.sha256()
    written = 0
    i = 0
    with path.open("wb") as out:
        while written < size:
            row = {
                "id": i,
                "question": f"Ticket {i}: the export of report {i % 97} fails with error E{i % 13}. " * 4,
                "expected": f"Re-run the export of report {i % 97} after clearing the cache. " * 6,
                "priority": i % 5,
                "tags": ["export", f"team-{i % 7}"],
                "score": round(i * 0.37 % 1, 3),
            }
            line = json.dumps(row).encode() + b"\n"
            out.write(line)
            digest.update(line)
            written += len(line)
            i += 1
    return digest.hexdigest()


def file_chunks(path: Path, chunk: int = 64 * 1024) -> Iterator[bytes]:
    with path.open("rb") as source:
        while data := source.read(chunk):
            yield data


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def registry_knows_plan(system: System, tenant_id: str, plan: str) -> bool:
    with MongoClient(system.infra.mongodb_uri, serverSelectionTimeoutMS=5000) as mongo:
        doc: dict[str, Any] | None = mongo[system.database("agent-registry")]["tenant_plans"].find_one(
            {"_id": tenant_id}
        )
    return bool(doc and doc.get("plan") == plan)


def test_a_50_mb_jsonl_file_round_trips_byte_identical_in_bounded_memory(
    system: System, tmp_path: Path
) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="pro")
    eventually(lambda: registry_knows_plan(system, tenant_id, "pro"), timeout_s=60)
    owner = client(system.url, owner_token)
    created = owner.post(
        f"/v1/tenants/{tenant_id}/datasets", json={"name": "Support tickets", "tags": ["e2e"]}
    )
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    path = f"/v1/tenants/{tenant_id}/datasets/{dataset_id}"

    baseline = peak_rss_mb(system.running.procs["agent-registry"].pid)
    source = tmp_path / "tickets.jsonl"
    sha256 = write_jsonl(source, FILE_BYTES)
    size = source.stat().st_size

    with httpx.Client(base_url=system.url, headers=owner.headers, timeout=300) as http:
        started = time.perf_counter()
        uploaded = http.post(
            f"{path}/upload", content=file_chunks(source), headers={"Content-Type": "application/x-ndjson"}
        )
        upload_s = time.perf_counter() - started
        assert uploaded.status_code == 200, uploaded.text
        body = uploaded.json()
        assert (body["size_bytes"], body["content_sha256"], body["format"]) == (size, sha256, "jsonl")
        rows = body["row_count"]
        after_upload = peak_rss_mb(system.running.procs["agent-registry"].pid)
        assert rows > 40_000
        assert [f["name"] for f in body["schema"]["fields"]] == [
            "id",
            "question",
            "expected",
            "priority",
            "tags",
            "score",
        ]

        started = time.perf_counter()
        digest = hashlib.sha256()
        received = 0
        with http.stream("GET", f"{path}/download") as reply:
            assert reply.status_code == 200
            assert reply.headers["content-length"] == str(size)
            assert reply.headers["etag"] == f'"{sha256}"'
            assert reply.headers["content-type"] == "application/x-ndjson"
            assert reply.headers["content-disposition"].startswith(
                'attachment; filename="Support tickets.jsonl"'
            )
            for chunk in reply.iter_raw():
                digest.update(chunk)
                received += len(chunk)
        download_s = time.perf_counter() - started
    assert received == size and digest.hexdigest() == sha256

    peak = peak_rss_mb(system.running.procs["agent-registry"].pid)
    print(
        f"\ndatasets e2e: {size / 1e6:.1f} MB, {rows} rows; "
        f"upload {upload_s:.1f}s ({size / 1e6 / upload_s:.1f} MB/s), "
        f"download {download_s:.1f}s ({size / 1e6 / download_s:.1f} MB/s); "
        f"agent-registry peak RSS (VmHWM): {baseline:.0f} MB before, {after_upload:.0f} MB after the upload, "
        f"{peak:.0f} MB after the download"
    )
    assert peak < PEAK_RSS_LIMIT_MB

    last = owner.get(f"{path}/examples/{rows - 1}")
    assert last.status_code == 200 and last.json()["data"]["id"] == rows - 1
    page = owner.get(f"{path}/examples", params={"limit": 3}).json()
    assert [e["index"] for e in page["items"]] == [0, 1, 2] and page["next_cursor"]
    schema = owner.get(f"{path}/files/schema.json")
    assert schema.status_code == 200 and schema.json()["row_count"] == rows


def test_a_broken_csv_row_is_refused_through_the_gateway(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="pro")
    owner = client(system.url, owner_token)
    dataset_id = owner.post(f"/v1/tenants/{tenant_id}/datasets", json={"name": "grades"}).json()["id"]
    path = f"/v1/tenants/{tenant_id}/datasets/{dataset_id}"
    data = b'student,grade\nada,A\n"multi\nline name",B\nbob,C,extra\ncarol,D\n'
    refused = owner.post(f"{path}/upload", content=data, headers={"Content-Type": "text/csv"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_dataset_row"
    assert error["details"] == {"line": 5, "error": "row has 3 field(s); the header has 2"}
    after = owner.get(path).json()
    assert (after["upload_id"], after["row_count"]) == (None, 0)
    assert owner.get(f"{path}/download").status_code == 404

    accepted = owner.post(f"{path}/upload?format=csv", content=data.replace(b",extra", b""))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["row_count"] == 4


def test_an_upload_over_the_free_plan_limit_gets_413_through_the_gateway(system: System) -> None:
    admin = client(system.url, system.token(system.admin_email, system.admin_password))
    tenant_id, _, owner_token = new_tenant_with_admin(system.url, admin, plan="free")
    eventually(lambda: registry_knows_plan(system, tenant_id, "free"), timeout_s=60)
    owner = client(system.url, owner_token)
    dataset_id = owner.post(f"/v1/tenants/{tenant_id}/datasets", json={"name": "big"}).json()["id"]
    row = json.dumps({"text": "x" * 1000}).encode() + b"\n"

    def body() -> Iterator[bytes]:
        for _ in range(12_000):  # 12 MB, streamed without a Content-Length
            yield row

    with httpx.Client(base_url=system.url, headers=owner.headers, timeout=120) as http:
        refused = http.post(
            f"/v1/tenants/{tenant_id}/datasets/{dataset_id}/upload",
            content=body(),
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert refused.json()["error"]["details"] == {"limit_bytes": 10_000_000, "plan": "free"}
    after = owner.get(f"/v1/tenants/{tenant_id}/datasets/{dataset_id}").json()
    assert (after["upload_id"], after["size_bytes"]) == (None, 0)
