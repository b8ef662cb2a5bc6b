"""The upload sink batches rows with their line numbers: a row the database refuses is reported as a
422 naming its line, like a row the reader refuses."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from agent_registry.datasets import storage
from agent_registry.datasets.model import InvalidDatasetRow
from agent_registry.datasets.storage import UploadSink

pytestmark = pytest.mark.unit


class RefusingExamples:
    """Refuses the document at `bad` of each batch, as MongoDB/FerretDB report it."""

    def __init__(self, bad: int) -> None:
        self.bad = bad
        self.batches: list[list[dict[str, Any]]] = []

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool) -> None:
        self.batches.append(docs)
        if len(self.batches) == 2:
            raise BulkWriteError(
                {
                    "writeErrors": [
                        {"index": self.bad + 1, "code": 2, "errmsg": "later problem"},
                        {
                            "index": self.bad,
                            "code": 2,
                            "errmsg": "invalid value: { } (nested arrays are not "
                            "supported), full error: {...}",
                        },
                    ]
                }
            )


class Store:
    def __init__(self, examples: RefusingExamples) -> None:
        self.examples = examples

    async def heartbeat(self, upload_id: str) -> None:
        return None


async def test_a_row_the_database_refuses_is_reported_with_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "BATCH_ROWS", 3)
    examples = RefusingExamples(bad=1)
    sink = UploadSink(Store(examples), None, "t", "dst_1", "upl_1")  # type: ignore[arg-type]
    rows = [(line, {"n": line}) for line in range(10, 70, 10)]  # lines 10, 20, ... 60
    with pytest.raises(InvalidDatasetRow) as caught:
        await sink.add_rows(rows[:3], 0)  # batch 1 (lines 10-30) goes out
        await sink.add_rows(rows[3:], 0)  # batch 2 (lines 40-60) is refused at its index 1
        await sink._inserts.wait()
    assert caught.value.details == {
        "line": 50,
        "error": "the row cannot be stored: invalid value: { } (nested arrays are not supported)",
    }
    assert [d["index"] for d in examples.batches[1]] == [3, 4, 5]
    assert examples.batches[1][1]["_id"] == "dst_1:upl_1:4"
