"""Dataset rules: exact MB arithmetic, the storage usage of uploads and deletes, plan limits, the fold."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agent_registry.datasets import model
from agent_registry.datasets.model import (
    CreateDataset,
    Dataset,
    DatasetArchived,
    DeleteDataset,
    StoredFile,
    UpdateDataset,
    UploadDatasetFile,
)
from agent_registry.datasets.parsing import SchemaBuilder
from agent_registry.domain.commands import Precondition
from agent_registry.domain.errors import InvalidValue, NotFound, PreconditionFailed
from agent_registry.domain.model import EventMeta
from ailab_contracts import REGISTRY, new_envelope
from ailab_contracts.events.datasets import DatasetDeleted, DatasetFileUploaded
from ailab_contracts.events.usage import UsageRecorded

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("size", "mb"),
    [
        (0, "0"),
        (1, "0.000001"),
        (12_345, "0.012345"),
        (999_999, "0.999999"),
        (1_000_000, "1"),
        (10_000_001, "10.000001"),
        (52_428_800, "52.4288"),
        (-52_428_800, "-52.4288"),
        (1_000_000_000_000_000_123, "1000000000000.000123"),
    ],
)
def test_megabytes_are_decimal_and_exact(size: int, mb: str) -> None:
    assert model.megabytes(size) == Decimal(mb)
    assert format(model.megabytes(size), "f") == mb


def test_megabytes_add_up_exactly() -> None:
    deltas = [123_457, -23_457, 7, -7, 1_000_000]
    assert sum((model.megabytes(d) for d in deltas), Decimal(0)) == Decimal("1.1")


@pytest.mark.parametrize(
    ("plan", "limit"),
    [
        ("free", 10_000_000),
        ("pro", 100_000_000),
        ("enterprise", 1_000_000_000),
        (None, 10_000_000),
        ("x", 10_000_000),
    ],
)
def test_upload_limits_per_plan(plan: str | None, limit: int) -> None:
    assert model.upload_limit(plan) == limit


def test_filenames_are_safe_in_a_header() -> None:
    assert model.filename("Support questions", "jsonl") == "Support questions.jsonl"
    assert model.filename('a"b/c\\d;é', "csv") == "a_b_c_d__.csv"
    assert model.filename("...", "csv") == "dataset.csv"


def test_stream_ids() -> None:
    stream = model.dataset_stream("acme", "dst_1")
    assert stream == "dataset:acme:dst_1"
    assert model.dataset_id_of_stream(stream) == "dst_1"
    assert model.dataset_id_of_stream("agent:acme:agt_1") is None
    assert model.dataset_id_of_stream("dataset:broken") is None


def _dataset(**overrides: object) -> Dataset:
    base = Dataset(
        id="dst_1",
        tenant_id="acme",
        name="Questions",
        description=None,
        status="active",
        tags=[],
        metadata={},
        created_at=AT,
        updated_at=AT,
        created_by="u1",
        updated_by="u1",
        version=1,
    )
    return Dataset(**{**base.__dict__, **overrides})  # type: ignore[arg-type]


def _stored(size: int, upload_id: str = "upl_2") -> StoredFile:
    schema = SchemaBuilder("jsonl")
    schema.add({"q": "x"})
    return StoredFile(upload_id, "jsonl", size, "a" * 64, 1, schema.build())


def _upload(**overrides: object) -> UploadDatasetFile:
    fields = {
        "tenant_id": "acme",
        "dataset_id": "dst_1",
        "actor": "u2",
        "format": "jsonl",
        "request_id": "req-1",
    }
    return UploadDatasetFile(**{**fields, **overrides})  # type: ignore[arg-type]


def test_a_first_upload_reports_the_stored_size_as_storage_mb() -> None:
    uploaded, usage = model.decide_file_uploaded(_dataset(), _upload(), _stored(12_345), AT)
    assert (uploaded.upload_id, uploaded.previous_upload_id, uploaded.size_bytes) == ("upl_2", None, 12_345)
    assert usage.meter == "storage_mb" and usage.provider == "internal"
    assert usage.quantity == Decimal("0.012345")
    assert usage.dimensions == {
        "dataset_id": "dst_1",
        "bytes_delta": 12_345,
        "action": "upload",
        "upload_id": "upl_2",
    }
    assert (usage.tenant_id, usage.user_id, usage.request_id, usage.timestamp) == ("acme", "u2", "req-1", AT)
    assert usage.model_dump(mode="json")["quantity"] == "0.012345"


def test_a_replacement_reports_the_difference_even_when_negative() -> None:
    current = _dataset(upload_id="upl_1", size_bytes=3_000_000, format="csv")
    uploaded, usage = model.decide_file_uploaded(current, _upload(), _stored(1_000_500), AT)
    assert uploaded.previous_upload_id == "upl_1"
    assert usage.quantity == Decimal("-1.9995")
    assert usage.dimensions["action"] == "replace" and usage.dimensions["bytes_delta"] == -1_999_500


def test_deleting_frees_the_stored_size() -> None:
    current = _dataset(upload_id="upl_1", size_bytes=2_500_000)
    deleted, usage = model.decide_delete(current, DeleteDataset("acme", "dst_1", "u3", "req-9", AT))
    assert (
        isinstance(deleted, DatasetDeleted)
        and deleted.upload_id == "upl_1"
        and deleted.size_bytes == 2_500_000
    )
    assert isinstance(usage, UsageRecorded) and usage.quantity == Decimal("-2.5")
    assert usage.dimensions == {
        "dataset_id": "dst_1",
        "bytes_delta": -2_500_000,
        "action": "delete",
        "upload_id": "upl_1",
    }


def test_deleting_a_dataset_without_a_file_reports_no_usage() -> None:
    (deleted,) = model.decide_delete(_dataset(), DeleteDataset("acme", "dst_1", "u3", "req-9", AT))
    assert isinstance(deleted, DatasetDeleted) and deleted.upload_id is None


def test_uploads_are_refused_to_archived_deleted_or_changed_datasets() -> None:
    with pytest.raises(DatasetArchived):
        model.check_uploadable(_dataset(status="archived"), _upload())
    with pytest.raises(NotFound):
        model.check_uploadable(_dataset(status="deleted"), _upload())
    with pytest.raises(PreconditionFailed):
        model.check_uploadable(_dataset(version=4), _upload(precondition=Precondition(frozenset({3}))))


def test_create_and_update_rules() -> None:
    created = model.decide_create("dst_9", CreateDataset("acme", "u1", "N", tags=[" a ", "a", "b"]))
    assert created.tags == ["a", "b"]
    with pytest.raises(InvalidValue):
        model.decide_create("dst_9", CreateDataset("acme", "u1", "N", metadata={"$x": 1}))
    current = _dataset(tags=["a"])
    assert (
        model.decide_update(current, UpdateDataset("acme", "dst_1", "u1", {"tags": ["a"], "name": None}))
        is None
    )
    updated = model.decide_update(current, UpdateDataset("acme", "dst_1", "u1", {"status": "archived"}))
    assert updated is not None and updated.status == "archived" and updated.name is None


def test_the_fold_follows_uploads_and_every_event_moves_the_version() -> None:
    stream = model.dataset_stream("acme", "dst_1")
    created = model.decide_create("dst_1", CreateDataset("acme", "u1", "Questions"))
    state = model.fold(None, "acme", [(_env(created, stream, 1), created)])
    assert state is not None and state.version == 1 and not state.has_file
    uploaded, usage = model.decide_file_uploaded(state, _upload(), _stored(42), AT)
    uploaded_envelope = _env(uploaded, stream, 2)  # one envelope: its occurred_at is compared below
    state = model.fold(state, "acme", [(uploaded_envelope, uploaded), (_env(usage, stream, 3), usage)])
    assert state is not None
    assert (state.version, state.upload_id, state.size_bytes, state.row_count, state.format) == (
        3,
        "upl_2",
        42,
        1,
        "jsonl",
    )
    assert state.schema == uploaded.schema_.model_dump(mode="json")
    assert state.artifacts == ["tenants/acme/datasets/dst_1/schema.json"]
    assert model.schema_document(state) == {
        "dataset_id": "dst_1",
        "upload_id": "upl_2",
        "format": "jsonl",
        "row_count": 1,
        **(state.schema or {}),
    }
    assert state.uploaded_at == EventMeta.of(uploaded_envelope).occurred_at


def _env(event: object, stream: str, version: int) -> object:
    return new_envelope(
        REGISTRY, event, stream_id=stream, stream_version=version, tenant_id="acme", producer="t"
    )  # type: ignore[arg-type]


def test_the_file_uploaded_event_serializes_its_schema_under_schema() -> None:
    uploaded, _ = model.decide_file_uploaded(_dataset(), _upload(), _stored(1), AT)
    wire = uploaded.model_dump(mode="json")
    assert "schema" in wire and "schema_" not in wire
    assert DatasetFileUploaded.model_validate(wire) == uploaded
