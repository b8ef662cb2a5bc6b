"""Where dataset files live: the bytes in GridFS (bucket `dataset_files`, one file per upload, `_id` =
upload id), the rows in `dataset_examples` (one document per row, `_id` =
`{dataset_id}:{upload_id}:{index}`), and the uploads still being written in `dataset_uploads`.

These collections are data, not read models: `rebuild-projections` leaves them alone. An upload is
written under a new upload id that nothing reads until `registry.DatasetFileUploaded` names it, so
discarding one (a failed upload, a replaced or deleted file) never touches what readers see.

The files use the GridFS layout (`dataset_files.files` + `dataset_files.chunks`, 255 KiB chunks), so
any GridFS client (`mongofiles`, PyMongo's `AsyncGridFSBucket`, which works on FerretDB 1.24 as on
MongoDB) reads them. They are written and read by the small `GridFsWriter` and `read_chunks` here
rather than by PyMongo's `AsyncGridIn`/`AsyncGridOut`, to keep memory bounded: `AsyncGridIn` buffers up
to 48 MB of chunks before each insert and `AsyncGridOut` fetches them in batches of up to 16 MB,
while these keep about `CHUNKS_PER_INSERT` / `CHUNKS_PER_READ` chunks (1 MB) in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from ailab_runtime.mongo_server import delete_matching

from .model import InvalidDatasetRow

log = logging.getLogger(__name__)

FILES_BUCKET = "dataset_files"
EXAMPLES = "dataset_examples"
UPLOADS = "dataset_uploads"

CHUNK_BYTES = 255 * 1024  # GridFS default chunk size
CHUNKS_PER_INSERT = 4
CHUNKS_PER_READ = 4
WRITES_IN_FLIGHT = 2  # per kind (chunks, examples) and upload
BATCH_ROWS = 1000  # rows per insert_many ...
BATCH_BYTES = 4 * 1024 * 1024  # ... or fewer when they add up to this many bytes of input
HEARTBEAT_S = 30.0  # an upload in progress refreshes `heartbeat_at` this often

Db = AsyncDatabase[dict[str, Any]]


class CorruptFile(Exception):
    """A stored file lost chunks (deleted while it was read): the download is cut short."""

    def __init__(self, file_id: str, problem: str) -> None:
        super().__init__(f"file {file_id}: {problem}")


def example_id(dataset_id: str, upload_id: str, index: int) -> str:
    return f"{dataset_id}:{upload_id}:{index}"


async def ensure_storage_indexes(db: Db) -> None:
    await db[EXAMPLES].create_index(
        [("tenant_id", ASCENDING), ("dataset_id", ASCENDING), ("upload_id", ASCENDING), ("index", ASCENDING)],
        unique=True,
        name="tenant_dataset_upload_index",
    )
    await db[UPLOADS].create_index([("heartbeat_at", ASCENDING)], name="heartbeat_at")
    files, chunks = db[f"{FILES_BUCKET}.files"], db[f"{FILES_BUCKET}.chunks"]
    # the indexes GridFS would create on its first write, and the ones the sweep reads by
    await chunks.create_index([("files_id", ASCENDING), ("n", ASCENDING)], unique=True, name="files_id_1_n_1")
    await files.create_index(
        [("filename", ASCENDING), ("uploadDate", ASCENDING)], name="filename_1_uploadDate_1"
    )
    await files.create_index([("uploadDate", ASCENDING)], name="uploadDate")
    await files.create_index(
        [("metadata.tenant_id", ASCENDING), ("metadata.dataset_id", ASCENDING)], name="tenant_dataset"
    )


class _InFlight:
    """Runs writes in the background, at most `limit` at a time: the caller prepares the next batch
    while earlier ones are being stored, and never holds more than `limit + 1` batches."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._tasks: deque[asyncio.Task[Any]] = deque()

    async def submit(self, write: Coroutine[Any, Any, Any]) -> None:
        while len(self._tasks) >= self._limit:
            await self._tasks.popleft()
        self._tasks.append(asyncio.ensure_future(write))

    async def wait(self) -> None:
        while self._tasks:
            await self._tasks.popleft()

    async def settle(self) -> None:
        """Let the writes already sent finish, failed or not. (Cancelling them would not stop the
        server, which could then store a batch after the upload's data was deleted.)"""
        tasks, self._tasks = list(self._tasks), deque()
        for task in tasks:
            with contextlib.suppress(Exception):
                await task


class GridFsWriter:
    """Writes one file in the GridFS layout, chunk by chunk; the file document comes last, on close."""

    def __init__(
        self,
        files: AsyncCollection[dict[str, Any]],
        chunks: AsyncCollection[dict[str, Any]],
        file_id: str,
        filename: str,
        metadata: dict[str, Any],
        chunk_size: int = CHUNK_BYTES,
    ) -> None:
        self._files, self._chunks = files, chunks
        self._file_id, self._filename, self._metadata = file_id, filename, metadata
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._pending: list[dict[str, Any]] = []
        self._n = 0
        self.length = 0
        self._writes = _InFlight(WRITES_IN_FLIGHT)

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.length += len(data)
        while len(self._buffer) >= self._chunk_size:
            self._add_chunk(bytes(self._buffer[: self._chunk_size]))
            del self._buffer[: self._chunk_size]
        if len(self._pending) >= CHUNKS_PER_INSERT:
            await self._send()

    def _add_chunk(self, data: bytes) -> None:
        self._pending.append({"files_id": self._file_id, "n": self._n, "data": Binary(data)})
        self._n += 1

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        await self._writes.submit(self._chunks.insert_many(batch, ordered=True))

    async def close(self) -> None:
        if self._buffer:
            self._add_chunk(bytes(self._buffer))
            self._buffer.clear()
        if self._pending:
            await self._send()
        await self._writes.wait()
        await self._files.insert_one(
            {
                "_id": self._file_id,
                "length": self.length,
                "chunkSize": self._chunk_size,
                "uploadDate": datetime.now(UTC),
                "filename": self._filename,
                "metadata": self._metadata,
            }
        )

    async def abort(self) -> None:
        """Stop writing (what was written is deleted by `DatasetFileStore.discard`)."""
        await self._writes.settle()
        self._pending.clear()
        self._buffer.clear()


class UploadSink:
    """Receives one upload: its bytes (to GridFS) and its rows (to `dataset_examples`, in batches);
    each goes on with the next batch while the previous one is being stored."""

    def __init__(
        self, store: DatasetFileStore, file: GridFsWriter, tenant_id: str, dataset_id: str, upload_id: str
    ) -> None:
        self._store = store
        self._file = file
        self.tenant_id, self.dataset_id, self.upload_id = tenant_id, dataset_id, upload_id
        self._batch: list[dict[str, Any]] = []
        self._lines: list[int] = []  # line number of each row in `_batch`
        self._batch_bytes = 0
        self._inserts = _InFlight(WRITES_IN_FLIGHT)
        self._next_index = 0
        self._beat = time.monotonic()

    async def write(self, chunk: bytes) -> None:
        await self._file.write(chunk)
        if time.monotonic() - self._beat > HEARTBEAT_S:
            self._beat = time.monotonic()
            await self._store.heartbeat(self.upload_id)

    async def add_rows(self, rows: list[tuple[int, dict[str, Any]]], size_bytes: int) -> None:
        """Append rows (in file order; indexes continue from the previous call)."""
        for line, data in rows:
            self._batch.append(
                {
                    "_id": example_id(self.dataset_id, self.upload_id, self._next_index),
                    "tenant_id": self.tenant_id,
                    "dataset_id": self.dataset_id,
                    "upload_id": self.upload_id,
                    "index": self._next_index,
                    "data": data,
                }
            )
            self._lines.append(line)
            self._next_index += 1
        self._batch_bytes += size_bytes
        if len(self._batch) >= BATCH_ROWS or self._batch_bytes >= BATCH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._batch:
            batch, lines = self._batch, self._lines
            self._batch, self._lines, self._batch_bytes = [], [], 0
            await self._inserts.submit(self._insert(batch, lines))

    async def _insert(self, batch: list[dict[str, Any]], lines: list[int]) -> None:
        try:
            await self._store.examples.insert_many(batch, ordered=False)
        except BulkWriteError as exc:
            # a value the database refuses although the reader let it through: name its line
            errors = sorted(exc.details.get("writeErrors", []), key=lambda e: int(e.get("index", 0)))
            if not errors:
                raise
            first = errors[0]
            message = str(first.get("errmsg", "the database refused it")).split(", full error")[0][:300]
            raise InvalidDatasetRow(
                lines[int(first.get("index", 0))], f"the row cannot be stored: {message}"
            ) from None

    async def finish(self) -> None:
        """Every row and byte stored; the file is complete (not yet the dataset's file)."""
        await self._flush()
        await self._inserts.wait()
        await self._file.close()

    async def discard(self) -> None:
        """Remove everything written so far (the upload failed)."""
        await self._inserts.settle()
        await self._file.abort()
        await self._store.discard(self.tenant_id, self.dataset_id, self.upload_id)


class DatasetFileStore:
    def __init__(self, db: Db) -> None:
        self.files = db[f"{FILES_BUCKET}.files"]
        self.chunks = db[f"{FILES_BUCKET}.chunks"]
        self.examples = db[EXAMPLES]
        self.uploads = db[UPLOADS]

    # --- writing --------------------------------------------------------------------------------
    async def begin(
        self, *, tenant_id: str, dataset_id: str, upload_id: str, filename: str, fmt: str, at: datetime
    ) -> UploadSink:
        """Register the upload as in progress (so a crash leaves a trace the sweep finds), then open it."""
        await self.uploads.insert_one(
            {
                "_id": upload_id,
                "tenant_id": tenant_id,
                "dataset_id": dataset_id,
                "started_at": at,
                "heartbeat_at": at,
            }
        )
        file = GridFsWriter(
            self.files,
            self.chunks,
            upload_id,
            filename,
            {"tenant_id": tenant_id, "dataset_id": dataset_id, "upload_id": upload_id, "format": fmt},
        )
        return UploadSink(self, file, tenant_id, dataset_id, upload_id)

    async def heartbeat(self, upload_id: str) -> None:
        # one writer per upload document (the request streaming it): safe on FerretDB
        await self.uploads.update_one({"_id": upload_id}, {"$set": {"heartbeat_at": datetime.now(UTC)}})

    async def settled(self, upload_id: str) -> None:
        """The upload is over (its file is the dataset's file now, or it was discarded)."""
        await self.uploads.delete_one({"_id": upload_id})

    async def discard(self, tenant_id: str, dataset_id: str, upload_id: str) -> None:
        """Delete an upload's rows and bytes, then its in-progress marker (idempotent; the file
        document goes last so that an interrupted discard is found again by the sweep)."""
        await delete_matching(
            self.examples, {"tenant_id": tenant_id, "dataset_id": dataset_id, "upload_id": upload_id}
        )
        await delete_matching(self.chunks, {"files_id": upload_id})
        await self.files.delete_one({"_id": upload_id, "metadata.tenant_id": tenant_id})
        await self.settled(upload_id)

    # --- reading --------------------------------------------------------------------------------
    async def open_file(self, tenant_id: str, upload_id: str) -> AsyncIterator[bytes] | None:
        """The stored bytes, chunk by chunk, or None if the file is gone."""
        doc = await self.files.find_one({"_id": upload_id, "metadata.tenant_id": tenant_id})
        if doc is None:
            return None
        return self._read_chunks(upload_id, int(doc["length"]), int(doc["chunkSize"]))

    async def _read_chunks(self, file_id: str, length: int, chunk_size: int) -> AsyncIterator[bytes]:
        expected = -(-length // chunk_size)  # chunks of a complete file
        cursor = self.chunks.find({"files_id": file_id}, {"n": 1, "data": 1}).sort("n", 1)
        n = 0
        async for chunk in cursor.batch_size(CHUNKS_PER_READ):
            if chunk["n"] != n:
                raise CorruptFile(file_id, f"chunk {n} is missing")
            yield bytes(chunk["data"])
            n += 1
        if n != expected:
            raise CorruptFile(file_id, f"{expected - n} of {expected} chunks are missing")

    async def examples_range(
        self, tenant_id: str, dataset_id: str, upload_id: str, start: int, stop: int
    ) -> list[dict[str, Any]]:
        """Rows `start` .. `stop - 1` of an upload, in index order."""
        if stop <= start:
            return []
        query = {
            "tenant_id": tenant_id,
            "dataset_id": dataset_id,
            "upload_id": upload_id,
            "index": {"$gte": start, "$lt": stop},
        }
        # the range is exact, so no server-side sort: FerretDB then stops scanning once it has them all
        docs = [d async for d in self.examples.find(query).limit(stop - start)]
        return sorted(docs, key=lambda d: int(d["index"]))

    async def example(
        self, tenant_id: str, dataset_id: str, upload_id: str, index: int
    ) -> dict[str, Any] | None:
        return await self.examples.find_one(
            {"_id": example_id(dataset_id, upload_id, index), "tenant_id": tenant_id}
        )

    # --- housekeeping ---------------------------------------------------------------------------
    async def stale_uploads(self, older_than: datetime) -> list[dict[str, Any]]:
        """In-progress markers whose writer stopped beating (crashed or cut off)."""
        return [d async for d in self.uploads.find({"heartbeat_at": {"$lt": older_than}})]

    async def files_before(self, older_than: datetime) -> list[dict[str, Any]]:
        """Stored files completed before `older_than` (id and metadata only)."""
        cursor = self.files.find({"uploadDate": {"$lt": older_than}}, {"_id": 1, "metadata": 1})
        return [d async for d in cursor]
