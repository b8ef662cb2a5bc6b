"""Dataset use cases: create, update, delete, and the streamed file upload.

An upload is read chunk by chunk: each chunk is hashed, counted against the plan's size limit,
written to the file store and parsed; completed rows go to the store in batches. Everything is
written under a new upload id that no reader knows; only when the whole file is stored and valid is
`registry.DatasetFileUploaded` recorded (with its `storage_mb` usage, in one commit), which switches
readers to the new file atomically. On any failure before that, the upload is discarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence

from pydantic import BaseModel

from ailab_runtime.errors import ApiError

from ..application.recording import record_and_fold
from ..domain.errors import RegistryError
from . import model
from .model import (
    DEFAULT_PLAN,
    CreateDataset,
    Dataset,
    DeleteDataset,
    InvalidDatasetRow,
    PayloadTooLarge,
    StoredFile,
    UpdateDataset,
    UploadDatasetFile,
    UploadInterrupted,
    dataset_stream,
)
from .parsing import SchemaBuilder, reader_for
from .ports import DatasetPorts, UploadSinkPort

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 3  # an upload outlives concurrent metadata edits: retry its commit on fresh state


async def _record(
    ports: DatasetPorts,
    state: Dataset | None,
    tenant_id: str,
    dataset_id: str,
    expected_version: int,
    events: Sequence[BaseModel],
) -> Dataset:
    return await record_and_fold(
        ports.recorder,
        model.evolve_dataset,
        state,
        tenant_id=tenant_id,
        stream_id=dataset_stream(tenant_id, dataset_id),
        expected_version=expected_version,
        events=events,
    )


async def create_dataset(cmd: CreateDataset, ports: DatasetPorts) -> Dataset:
    event = model.decide_create(ports.new_id("dst"), cmd)
    return await _record(ports, None, cmd.tenant_id, event.dataset_id, 0, [event])


async def update_dataset(cmd: UpdateDataset, ports: DatasetPorts) -> Dataset:
    dataset = await ports.views.dataset(cmd.tenant_id, cmd.dataset_id)
    event = model.decide_update(dataset, cmd)
    assert dataset is not None
    if event is None:
        return dataset
    return await _record(ports, dataset, cmd.tenant_id, dataset.id, dataset.version, [event])


async def delete_dataset(cmd: DeleteDataset, ports: DatasetPorts) -> tuple[Dataset, str | None]:
    """Returns the deleted dataset and the upload id of its file (to discard), if it had one."""
    dataset = await ports.views.dataset(cmd.tenant_id, cmd.dataset_id)
    events = model.decide_delete(dataset, cmd)
    assert dataset is not None
    deleted = await _record(ports, dataset, cmd.tenant_id, dataset.id, dataset.version, events)
    return deleted, dataset.upload_id


# --- upload ---------------------------------------------------------------------------------------


async def upload_file(
    cmd: UploadDatasetFile, body: AsyncIterator[bytes], ports: DatasetPorts
) -> tuple[Dataset, str | None]:
    """Store the streamed file as the dataset's new file. Returns the dataset with it and the upload
    id of the file it replaced (to discard), if any."""
    dataset = model.check_uploadable(await ports.views.dataset(cmd.tenant_id, cmd.dataset_id), cmd)
    plan = await ports.plans.plan(cmd.tenant_id) or DEFAULT_PLAN
    limit = model.upload_limit(plan)
    if cmd.declared_size is not None and cmd.declared_size > limit:
        raise PayloadTooLarge(limit, plan)  # refused before reading a byte
    upload_id = ports.new_id("upl")
    sink = await ports.files.begin(
        tenant_id=cmd.tenant_id,
        dataset_id=dataset.id,
        upload_id=upload_id,
        filename=model.filename(dataset.name, cmd.format),
        fmt=cmd.format,
        at=ports.clock(),
    )
    committing = False
    try:
        stored = await _receive(cmd, body, sink, upload_id, limit, plan)
        committing = True
        state, replaced = await _commit(cmd, dataset, stored, ports)
    except BaseException as exc:
        if committing and not isinstance(exc, RegistryError | ApiError):
            # the commit may have been stored although it failed here: the sweep decides later from
            # the event store whether this upload is the dataset's file or garbage
            log.warning(
                "upload commit outcome unknown; left to the sweep", extra={"fields": {"upload_id": upload_id}}
            )
            raise
        await asyncio.shield(_discard(sink, upload_id))
        raise
    await ports.files.settled(upload_id)
    return state, replaced


async def _discard(sink: UploadSinkPort, upload_id: str) -> None:
    try:
        await sink.discard()
    except Exception:  # noqa: BLE001 - the in-progress marker stays: the sweep finishes the job
        log.exception("could not discard a failed upload", extra={"fields": {"upload_id": upload_id}})


async def _receive(
    cmd: UploadDatasetFile,
    body: AsyncIterator[bytes],
    sink: UploadSinkPort,
    upload_id: str,
    limit: int,
    plan: str,
) -> StoredFile:
    reader = reader_for(cmd.format)
    schema = SchemaBuilder(cmd.format)
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in body:
            if not chunk:
                continue
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit, plan)  # stop reading right here
            digest.update(chunk)
            await sink.write(chunk)
            rows = reader.feed(chunk)
            if rows:
                for _, row in rows:
                    schema.add(row)
                await sink.add_rows(rows, len(chunk))
    except UploadInterrupted:
        raise InvalidDatasetRow(reader.lines + 1, "the upload ended before the end of the file") from None
    rows = reader.close()
    for _, row in rows:
        schema.add(row)
    await sink.add_rows(rows, 0)
    await sink.finish()
    return StoredFile(
        upload_id=upload_id,
        format=cmd.format,
        size_bytes=size,
        content_sha256=digest.hexdigest(),
        row_count=schema.rows,
        schema=schema.build(),
    )


async def _commit(
    cmd: UploadDatasetFile, dataset: Dataset, stored: StoredFile, ports: DatasetPorts
) -> tuple[Dataset, str | None]:
    current = dataset
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        uploaded, usage = model.decide_file_uploaded(current, cmd, stored, ports.clock())
        try:
            state = await _record(
                ports, current, cmd.tenant_id, current.id, current.version, [uploaded, usage]
            )
            return state, uploaded.previous_upload_id
        except ApiError as exc:
            if exc.status != 409 or attempt == COMMIT_ATTEMPTS:
                raise
            reloaded = await ports.views.dataset(cmd.tenant_id, cmd.dataset_id)
            if reloaded is None or reloaded.version == current.version:
                raise  # the view lags the stream: let the caller retry
            current = reloaded
    raise AssertionError("unreachable")  # pragma: no cover


async def discard_upload(ports: DatasetPorts, tenant_id: str, dataset_id: str, upload_id: str) -> None:
    """Best effort: delete a file nobody reads any more (what fails here, the sweep retries)."""
    try:
        await ports.files.discard(tenant_id, dataset_id, upload_id)
    except Exception:  # noqa: BLE001
        log.exception("could not discard an old dataset file", extra={"fields": {"upload_id": upload_id}})
