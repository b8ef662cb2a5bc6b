"""The upload use case over in-memory fakes: a file becomes the dataset's file only when all of it is
stored and valid; anything else discards it, and reading stops as soon as the plan's limit is passed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from agent_registry.adapters.memory import InMemoryEventStore, sequential_ids
from agent_registry.application.ports import ListFilter
from agent_registry.datasets import handlers, model
from agent_registry.datasets.model import (
    CreateDataset,
    Dataset,
    InvalidDatasetRow,
    PayloadTooLarge,
    UpdateDataset,
    UploadDatasetFile,
    UploadInterrupted,
)
from agent_registry.datasets.ports import DatasetPorts
from ailab_contracts import REGISTRY, EventEnvelope
from ailab_contracts.events.datasets import DatasetFileUploaded
from ailab_contracts.events.usage import UsageRecorded

pytestmark = pytest.mark.unit


class FakeRegistry(InMemoryEventStore):
    """Views and recorder: streams with optimistic concurrency, state folded with the domain fold."""

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[tuple[str, str], Dataset] = {}

    def _apply(self, envelope: EventEnvelope, event: BaseModel) -> None:
        dataset_id = model.dataset_id_of_stream(envelope.stream_id)
        assert dataset_id is not None
        key = (envelope.tenant_id, dataset_id)
        new = model.fold(self.state.get(key), envelope.tenant_id, [(envelope, event)])
        assert new is not None
        self.state[key] = new

    async def dataset(self, tenant_id: str, dataset_id: str) -> Dataset | None:
        return self.state.get((tenant_id, dataset_id))

    async def datasets(self, tenant_id: str, flt: ListFilter) -> tuple[list[Dataset], str | None]:
        return [d for (t, _), d in self.state.items() if t == tenant_id], None

    async def artifact(self, tenant_id: str, path: str) -> Any | None:
        return None


class FakeSink:
    def __init__(self, store: FakeFiles, upload_id: str) -> None:
        self.store, self.upload_id = store, upload_id

    async def write(self, chunk: bytes) -> None:
        self.store.bytes[self.upload_id] = self.store.bytes.get(self.upload_id, b"") + chunk

    async def add_rows(self, rows: list[tuple[int, dict[str, Any]]], size_bytes: int) -> None:
        self.store.rows.setdefault(self.upload_id, []).extend(row for _, row in rows)

    async def finish(self) -> None:
        self.store.finished.add(self.upload_id)

    async def discard(self) -> None:
        await self.store.discard("", "", self.upload_id)


class FakeFiles:
    def __init__(self) -> None:
        self.bytes: dict[str, bytes] = {}
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.finished: set[str] = set()
        self.in_progress: set[str] = set()
        self.discarded: list[str] = []

    async def begin(
        self, *, tenant_id: str, dataset_id: str, upload_id: str, filename: str, fmt: str, at: Any
    ) -> FakeSink:
        self.in_progress.add(upload_id)
        return FakeSink(self, upload_id)

    async def settled(self, upload_id: str) -> None:
        self.in_progress.discard(upload_id)

    async def discard(self, tenant_id: str, dataset_id: str, upload_id: str) -> None:
        self.bytes.pop(upload_id, None)
        self.rows.pop(upload_id, None)
        self.finished.discard(upload_id)
        self.in_progress.discard(upload_id)
        self.discarded.append(upload_id)

    async def open_file(self, tenant_id: str, upload_id: str) -> None:
        return None

    async def examples_range(self, *args: Any) -> list[dict[str, Any]]:
        return []

    async def example(self, *args: Any) -> None:
        return None


class FakePlans:
    def __init__(self, plans: dict[str, str] | None = None) -> None:
        self.plans = plans or {}

    async def plan(self, tenant_id: str) -> str | None:
        return self.plans.get(tenant_id)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def files() -> FakeFiles:
    return FakeFiles()


@pytest.fixture
def ports(registry: FakeRegistry, files: FakeFiles) -> DatasetPorts:
    return DatasetPorts(
        views=registry,
        recorder=registry,
        files=files,
        plans=FakePlans({"pro-tenant": "pro"}),
        new_id=sequential_ids(),
    )


class Body:
    """A request body in chunks, counting how many were read."""

    def __init__(self, chunks: list[bytes], interrupt: bool = False) -> None:
        self.chunks, self.interrupt, self.read = chunks, interrupt, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk
        if self.interrupt:
            raise UploadInterrupted()


def upload(tenant: str = "acme", fmt: str = "jsonl", **kw: Any) -> UploadDatasetFile:
    return UploadDatasetFile(tenant, "dst_0001", "u1", fmt, "req-1", **kw)


async def new_dataset(ports: DatasetPorts, tenant: str = "acme") -> Dataset:
    return await handlers.create_dataset(CreateDataset(tenant, "u1", "Questions"), ports)


async def test_an_upload_becomes_the_dataset_file_and_replaces_the_previous_one(
    ports: DatasetPorts, registry: FakeRegistry, files: FakeFiles
) -> None:
    await new_dataset(ports)
    first, replaced = await handlers.upload_file(
        upload(), Body([b'{"a": 1}\n{"a"', b": 2}\n"]).__aiter__(), ports
    )
    assert replaced is None
    assert (first.upload_id, first.row_count, first.size_bytes, first.version) == ("upl_0002", 2, 18, 3)
    assert files.rows["upl_0002"] == [{"a": 1}, {"a": 2}] and files.in_progress == set()
    second, replaced = await handlers.upload_file(upload(fmt="csv"), Body([b"a\n1\n"]).__aiter__(), ports)
    assert replaced == "upl_0002" and second.upload_id == "upl_0003" and second.format == "csv"
    events = [e.event_type for e in registry.streams["dataset:acme:dst_0001"]]
    assert events == [
        "registry.DatasetCreated",
        "registry.DatasetFileUploaded",
        "usage.UsageRecorded",
        "registry.DatasetFileUploaded",
        "usage.UsageRecorded",
    ]
    assert registry.streams["dataset:acme:dst_0001"][-1].payload["quantity"] == "-0.000014"


async def test_a_bad_row_discards_the_upload_and_keeps_the_previous_file(
    ports: DatasetPorts, registry: FakeRegistry, files: FakeFiles
) -> None:
    await new_dataset(ports)
    await handlers.upload_file(upload(), Body([b'{"a": 1}\n']).__aiter__(), ports)
    with pytest.raises(InvalidDatasetRow) as caught:
        await handlers.upload_file(
            upload(), Body([b'{"a": 1}\n', b"{broken\n", b'{"a": 3}\n']).__aiter__(), ports
        )
    assert caught.value.details == {"line": 2, "error": caught.value.details["error"]}
    assert files.discarded == ["upl_0003"] and "upl_0003" not in files.rows and files.in_progress == set()
    current = await registry.dataset("acme", "dst_0001")
    assert current is not None and current.upload_id == "upl_0002" and current.version == 3


async def test_reading_stops_as_soon_as_the_plan_limit_is_passed(
    ports: DatasetPorts, files: FakeFiles
) -> None:
    await new_dataset(ports)
    line = b'{"text": "' + b"x" * 999_987 + b'"}\n'  # 1,000,000 bytes
    assert len(line) == 1_000_000
    body = Body([line] * 10 + [b'{"a": 1}\n'] + [line] * 5)
    with pytest.raises(PayloadTooLarge) as caught:
        await handlers.upload_file(upload(), body.__aiter__(), ports)
    assert body.read == 11  # the chunk that crossed 10 MB, and not one more
    assert caught.value.status == 413 and caught.value.details == {"limit_bytes": 10_000_000, "plan": "free"}
    assert files.discarded == ["upl_0002"] and files.bytes == {}


async def test_exactly_the_limit_is_accepted(ports: DatasetPorts) -> None:
    await new_dataset(ports)
    line = b'{"text": "' + b"x" * 999_987 + b'"}\n'
    stored, _ = await handlers.upload_file(upload(), Body([line] * 10).__aiter__(), ports)
    assert stored.size_bytes == 10_000_000


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    ports: DatasetPorts, files: FakeFiles
) -> None:
    await new_dataset(ports, "pro-tenant")
    body = Body([b'{"a": 1}\n'])
    with pytest.raises(PayloadTooLarge) as caught:
        await handlers.upload_file(upload("pro-tenant", declared_size=100_000_001), body.__aiter__(), ports)
    assert caught.value.details == {"limit_bytes": 100_000_000, "plan": "pro"}
    assert body.read == 0 and files.in_progress == set() and files.discarded == []


async def test_an_interrupted_body_is_a_422_naming_the_next_line(
    ports: DatasetPorts, files: FakeFiles
) -> None:
    await new_dataset(ports)
    with pytest.raises(InvalidDatasetRow) as caught:
        await handlers.upload_file(
            upload(), Body([b'{"a": 1}\n{"a": 2}\n{"a"'], interrupt=True).__aiter__(), ports
        )
    assert caught.value.details == {"line": 3, "error": "the upload ended before the end of the file"}
    assert files.discarded == ["upl_0002"]


async def test_a_concurrent_metadata_change_does_not_fail_the_upload(
    ports: DatasetPorts, registry: FakeRegistry
) -> None:
    await new_dataset(ports)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"a": 1}\n'
        # someone renames the dataset while the file is streaming
        await handlers.update_dataset(UpdateDataset("acme", "dst_0001", "u9", {"name": "Renamed"}), ports)
        yield b'{"a": 2}\n'

    stored, _ = await handlers.upload_file(upload(), body(), ports)
    assert (stored.name, stored.row_count, stored.version) == ("Renamed", 2, 4)


async def test_an_if_match_upload_loses_to_a_concurrent_change(ports: DatasetPorts, files: FakeFiles) -> None:
    from agent_registry.domain.commands import Precondition
    from agent_registry.domain.errors import PreconditionFailed

    await new_dataset(ports)

    async def body() -> AsyncIterator[bytes]:
        yield b'{"a": 1}\n'
        await handlers.update_dataset(UpdateDataset("acme", "dst_0001", "u9", {"name": "Renamed"}), ports)

    with pytest.raises(PreconditionFailed):
        await handlers.upload_file(upload(precondition=Precondition(frozenset({1}))), body(), ports)
    assert files.discarded == ["upl_0002"]


async def test_an_unknown_commit_outcome_leaves_the_upload_to_the_sweep(
    ports: DatasetPorts, registry: FakeRegistry, files: FakeFiles
) -> None:
    await new_dataset(ports)
    registry.fail_next_record = ConnectionError("connection reset while committing")
    with pytest.raises(ConnectionError):
        await handlers.upload_file(upload(), Body([b'{"a": 1}\n']).__aiter__(), ports)
    assert files.discarded == [] and files.in_progress == {"upl_0002"}


async def test_deleting_returns_the_file_to_discard_and_records_the_freed_storage(
    ports: DatasetPorts, registry: FakeRegistry
) -> None:
    from datetime import UTC, datetime

    await new_dataset(ports)
    await handlers.upload_file(upload(), Body([b'{"a": 1}\n']).__aiter__(), ports)
    deleted, upload_id = await handlers.delete_dataset(
        model.DeleteDataset("acme", "dst_0001", "u1", "req-2", datetime.now(UTC)), ports
    )
    assert deleted.deleted and upload_id == "upl_0002"
    last = registry.streams["dataset:acme:dst_0001"][-1]
    _, usage = REGISTRY.parse(last.to_wire())
    assert isinstance(usage, UsageRecorded) and str(usage.quantity) == "-0.000009"
    assert not isinstance(usage, DatasetFileUploaded)
