"""Dataset files are read incrementally: rows come out the same whatever the chunking, and the first
unreadable row is reported with its 1-based physical line."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_registry.datasets.model import InvalidDatasetRow
from agent_registry.datasets.parsing import CsvReader, JsonlReader, Row, reader_for

pytestmark = pytest.mark.unit

CHUNKINGS = [1, 2, 3, 7, 64, 10_000]


def read(data: bytes, fmt: str, chunk: int = 10_000, max_row_bytes: int | None = None) -> list[Row]:
    reader = reader_for(fmt) if max_row_bytes is None else reader_for(fmt, max_row_bytes)
    rows: list[Row] = []
    for i in range(0, len(data), chunk):
        rows += reader.feed(data[i : i + chunk])
    return rows + reader.close()


def error_of(
    data: bytes, fmt: str, chunk: int = 10_000, max_row_bytes: int | None = None
) -> dict[str, object]:
    with pytest.raises(InvalidDatasetRow) as caught:
        read(data, fmt, chunk, max_row_bytes)
    details: dict[str, object] = caught.value.details
    assert caught.value.code == "invalid_dataset_row"
    return details


# --- JSONL ---------------------------------------------------------------------------------------

JSONL = (
    b'{"q": "2 + 2?", "a": 4}\n'
    b"\n"  # blank lines are skipped but counted
    b'{"q": "caf\xc3\xa9", "a": null, "tags": ["x", {"y": 1.5}]}\r\n'
    b'{"q": "last line without newline", "a": true}'
)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_jsonl_rows_and_line_numbers_do_not_depend_on_chunking(chunk: int) -> None:
    assert read(JSONL, "jsonl", chunk) == [
        (1, {"q": "2 + 2?", "a": 4}),
        (3, {"q": "café", "a": None, "tags": ["x", {"y": 1.5}]}),
        (4, {"q": "last line without newline", "a": True}),
    ]


def test_jsonl_utf8_bom_is_ignored() -> None:
    assert read(b'\xef\xbb\xbf{"a": 1}\n', "jsonl") == [(1, {"a": 1})]


@pytest.mark.parametrize(
    ("data", "line", "error"),
    [
        (b'{"a": 1}\n{"a": 2\n', 2, "not valid JSON"),
        (b'{"a": 1}\n\n\n[1, 2]\n', 4, "a row must be a JSON object, not array"),
        (b'{"a": 1}\n"text"\n', 2, "a row must be a JSON object, not string"),
        (b'{"a": 1}\nnull\n', 2, "a row must be a JSON object, not null"),
        (b'{"a": NaN}\n', 1, "NaN is not a JSON number"),
        (b'{"a": 1}\n{"a": -Infinity}\n', 2, "-Infinity is not a JSON number"),
        (b'{"a.b": 1}\n', 1, "cannot contain '.'"),
        (b'{"a": {"$where": 1}}\n', 1, "a: field name '$where' cannot start with '$'"),
        (b'{"a": [{"": 1}]}\n', 1, "a[0]: empty field names cannot be stored"),
        (b'{"a": 9223372036854775808}\n', 1, "does not fit in 64 bits"),
        (b'{"a": "x\\u0000y"}\n', 1, "a: text cannot contain NUL"),
        (
            b'{"a": {"m": [[1, 2], [3, 4]]}}\n',
            1,
            "a.m[0]: an array directly inside an array cannot be stored",
        ),
        (b'{"a": 1}\n{"a": "\xff"}\n', 2, "not valid UTF-8"),
        (b"", 1, "the file holds no rows"),
        (b"\n \n", 3, "the file holds no rows"),
        (b'{"a": 1}\n{"a":', 2, "not valid JSON"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 5, 10_000])
def test_jsonl_errors_name_the_line(data: bytes, line: int, error: str, chunk: int) -> None:
    details = error_of(data, "jsonl", chunk)
    assert details["line"] == line
    assert error in str(details["error"])


def test_jsonl_too_deep_is_refused() -> None:
    deep = b'{"a": ' * 40 + b"1" + b"}" * 40
    details = error_of(b'{"ok": 1}\n' + deep + b"\n", "jsonl")
    assert details["line"] == 2 and "deeper than 32" in str(details["error"])


def test_jsonl_a_row_longer_than_the_limit_is_refused_without_buffering_it_all() -> None:
    reader = JsonlReader(max_row_bytes=100)
    assert reader.feed(b'{"a": 1}\n') == [(1, {"a": 1})]
    with pytest.raises(InvalidDatasetRow) as caught:
        for _ in range(10):
            reader.feed(b"x" * 50)  # no newline: the partial row grows past the limit
    assert caught.value.details["line"] == 2
    assert "longer than 100 bytes" in caught.value.details["error"]


def test_jsonl_reader_counts_rows_and_lines() -> None:
    reader = JsonlReader()
    reader.feed(JSONL)
    reader.close()
    assert (reader.rows, reader.lines) == (3, 4)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(
            st.text(st.characters(blacklist_characters="$.\x00", blacklist_categories=("Cs",)), min_size=1),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(2**63), 2**63 - 1),
                st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
            ),
            max_size=4,
        ),
        min_size=1,
        max_size=20,
    ),
    cuts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
)
def test_jsonl_any_split_of_any_file_reads_the_same_rows(
    rows: list[dict[str, object]], cuts: list[int]
) -> None:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    reader = JsonlReader()
    got: list[Row] = []
    position = 0
    for cut in cuts:
        got += reader.feed(data[position : position + cut])
        position += cut
    got += reader.feed(data[position:])
    got += reader.close()
    assert [r for _, r in got] == rows
    assert [line for line, _ in got] == list(range(1, len(rows) + 1))


# --- CSV -----------------------------------------------------------------------------------------

CSV = (
    b"\xef\xbb\xbfid,question,answer\r\n"
    b'1,"What is\r\n2 + 2?",4\r\n'  # a quoted field spanning two lines (lines 2-3)
    b"\r\n"  # blank line 4
    b'2,"She said ""hi""",\r\n'  # escaped quotes, an empty cell (line 5)
    b"3,plain,last"  # no final newline (line 6)
)


@pytest.mark.parametrize("chunk", CHUNKINGS)
def test_csv_records_keep_their_starting_line_whatever_the_chunking(chunk: int) -> None:
    assert read(CSV, "csv", chunk) == [
        (2, {"id": "1", "question": "What is\r\n2 + 2?", "answer": "4"}),
        (5, {"id": "2", "question": 'She said "hi"', "answer": ""}),
        (6, {"id": "3", "question": "plain", "answer": "last"}),
    ]


@pytest.mark.parametrize(
    ("data", "line", "error"),
    [
        (b"a,b\n1,2\n3\n4,5\n", 3, "row has 1 field(s); the header has 2"),
        (b"a,b\n1,2\n3,4,5\n", 3, "row has 3 field(s); the header has 2"),
        # the broken row starts on line 4, after a record spanning lines 2-3
        (b'a,b\n1,"x\ny"\n5,6,7\n', 4, "row has 3 field(s); the header has 2"),
        (b'a,b\n1,x"y\n2,3\n', 2, 'a quote (") inside an unquoted field'),
        (b'a,b\n1,"open\n2,3\n', 2, "a quoted field is not closed before the end of the file"),
        (b'a,b\n"x"y,2\n', 2, "not valid CSV"),
        (b"a,a\n1,2\n", 1, "header: field name 'a' appears twice"),
        (b"a,\n1,2\n", 1, "header: empty field names cannot be stored"),
        (b"a,b.c\n1,2\n", 1, "header: field name 'b.c' cannot contain '.'"),
        (b"a,b\n1,2\n\xff,3\n", 3, "not valid UTF-8"),
        (b"a,b\n1,2\nx\x00y,3\n", 3, "text cannot contain NUL"),
        (b"", 1, "the file is empty: a header row is required"),
        (b"a,b\r\n", 2, "the file has a header but no rows"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 4, 10_000])
def test_csv_errors_name_the_physical_line_of_the_row(data: bytes, line: int, error: str, chunk: int) -> None:
    details = error_of(data, "csv", chunk)
    assert details["line"] == line
    assert error in str(details["error"])


def test_csv_a_record_longer_than_the_limit_is_refused() -> None:
    data = b'a,b\n1,"' + b"x\n" * 200 + b'"\n'
    details = error_of(data, "csv", 16, max_row_bytes=100)
    assert details["line"] == 2 and "longer than 100 bytes" in str(details["error"])


_CELL = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    cells=st.lists(st.tuples(_CELL, _CELL), min_size=1, max_size=15),
    cuts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
)
def test_csv_any_split_of_any_file_reads_the_same_rows(cells: list[tuple[str, str]], cuts: list[int]) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["x", "y"])
    writer.writerows(cells)
    data = text.getvalue().encode()
    reader = CsvReader()
    got: list[Row] = []
    position = 0
    for cut in cuts:
        got += reader.feed(data[position : position + cut])
        position += cut
    got += reader.feed(data[position:])
    got += reader.close()
    assert [(r["x"], r["y"]) for _, r in got] == cells
    assert got[0][0] == 2


def test_arrays_of_objects_holding_arrays_are_storable() -> None:
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "empty": [[]][0]}
    assert read(json.dumps(row).encode(), "jsonl") == [(1, row)]
