"""Reading dataset files incrementally, chunk by chunk as they arrive, and inferring their schema
(pure, no I/O).

A reader is fed the raw bytes in whatever chunks the network delivers and hands back every row
completed so far, with its 1-based line number; only a partial line (or a partial CSV record) is
ever kept between chunks, and no row may be longer than `MAX_ROW_BYTES`, so memory stays bounded
whatever the file size. The first unreadable row raises `InvalidDatasetRow(line, error)`.

- JSONL: one JSON object per line (UTF-8, `\\n` or `\\r\\n`); blank lines are skipped. Values must be
  storable as documents by both MongoDB and FerretDB 1.24: keys non-empty, without a `$` prefix, `.`
  or NUL; no NUL in text; no array directly inside an array (FerretDB 1.24 refuses those); integers
  within 64 bits; no NaN/Infinity; at most 32 levels deep.
- CSV: RFC 4180 as Python's `csv` module reads it (comma, `"` quotes, `""` escapes, quoted fields may
  span lines; UTF-8, optional BOM). The first record is the header (non-empty, unique, storable
  names); every later record must have exactly as many fields and no NUL; blank lines are skipped. A row's
  line number is the physical line where its record starts. Cells stay text in the examples.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ailab_contracts.events.datasets import DatasetSchema, SchemaField

from ..domain.values import json_type
from .model import InvalidDatasetRow

MAX_ROW_BYTES = 1_048_576  # one row (line or CSV record) of a file; MongoDB documents stop at 16 MiB
MAX_DEPTH = 32
MAX_SCHEMA_FIELDS = 1000
MAX_EXAMPLE_CHARS = 200
_INT64 = (-(2**63), 2**63 - 1)

Row = tuple[int, dict[str, Any]]  # (1-based line number, row)


def _key_problem(key: str) -> str | None:
    if not key:
        return "empty field names cannot be stored"
    if key.startswith("$"):
        return f"field name {key!r} cannot start with '$'"
    if "." in key:
        return f"field name {key!r} cannot contain '.'"
    if "\x00" in key:
        return f"field name {key!r} cannot contain NUL"
    return None


def value_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Why a parsed JSON value cannot be stored as a document, or None (first problem only)."""
    if isinstance(value, str):
        return f"{path}: text cannot contain NUL (\\u0000)" if "\x00" in value else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return f"{path or 'row'}: nests deeper than {MAX_DEPTH} levels"
        for key, item in value.items():
            if problem := _key_problem(key):
                return f"{path}: {problem}" if path else problem
            if problem := value_problem(item, f"{path}.{key}" if path else key, depth + 1):
                return problem
        return None
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            return f"{path or 'row'}: nests deeper than {MAX_DEPTH} levels"
        for i, item in enumerate(value):
            if isinstance(item, list):
                return f"{path}[{i}]: an array directly inside an array cannot be stored"
            if problem := value_problem(item, f"{path}[{i}]", depth + 1):
                return problem
        return None
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            return f"{path}: integer {value} does not fit in 64 bits"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}: NaN and Infinity are not JSON numbers"
    return f"{path}: unsupported value"  # pragma: no cover - json.loads yields only the types above


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class JsonlReader:
    """JSON Lines, fed incrementally."""

    def __init__(self, max_row_bytes: int = MAX_ROW_BYTES) -> None:
        self._max = max_row_bytes
        self._pending = b""
        self.lines = 0  # physical lines completed so far
        self.rows = 0

    def feed(self, chunk: bytes) -> list[Row]:
        data = self._pending + chunk if self._pending else chunk
        parts = data.split(b"\n")
        self._pending = parts.pop()
        rows = [row for raw in parts if (row := self._line(raw)) is not None]
        if len(self._pending) > self._max:
            raise InvalidDatasetRow(self.lines + 1, f"row is longer than {self._max} bytes")
        return rows

    def close(self) -> list[Row]:
        rest, self._pending = self._pending, b""
        rows = [row] if rest and (row := self._line(rest)) is not None else []
        if self.rows == 0:
            raise InvalidDatasetRow(self.lines + 1, "the file holds no rows")
        return rows

    def _line(self, raw: bytes) -> Row | None:
        self.lines += 1
        line = self.lines
        if len(raw) > self._max:
            raise InvalidDatasetRow(line, f"row is longer than {self._max} bytes")
        if line == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        if not raw.strip():
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidDatasetRow(line, f"not valid UTF-8 (byte {exc.start + 1} of the line)") from None
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise InvalidDatasetRow(line, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        except ValueError as exc:
            raise InvalidDatasetRow(line, f"not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidDatasetRow(line, f"nests deeper than {MAX_DEPTH} levels") from None
        if not isinstance(value, dict):
            raise InvalidDatasetRow(line, f"a row must be a JSON object, not {json_type(value)}")
        if problem := value_problem(value):
            raise InvalidDatasetRow(line, problem)
        self.rows += 1
        return line, value


class _Lines:
    """The lines of complete records, handed to `csv.reader` one record at a time."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if not self.queue:
            raise StopIteration
        return self.queue.popleft()


_STRAY_QUOTE = 'not valid CSV: a quote (") inside an unquoted field; quote the field and double the quote'


def _complete_record(line: str) -> bool:
    """Whether `line` alone is a whole CSV record although it holds an odd number of quotes (so one
    of them sits in an unquoted field, where the `csv` module would keep it as text)."""
    try:
        return len(list(csv.reader([line], strict=True))) == 1
    except csv.Error:
        return False  # a quoted field is still open: the record goes on on the next line


class CsvReader:
    """CSV with a header row, fed incrementally.

    Text is cut into physical lines; lines are gathered until the record's `"` count is even (every
    quoted field closed), and only then handed to one long-lived `csv.reader`, which therefore always
    has the whole record. A stray quote in an unquoted field breaks that count and is reported.
    """

    def __init__(self, max_row_bytes: int = MAX_ROW_BYTES) -> None:
        self._max = max_row_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._pending = ""
        self._record: list[str] = []
        self._record_chars = 0
        self._record_start = 1
        self._quotes = 0
        self._lines = _Lines()
        self._reader = csv.reader(self._lines, strict=True)
        self.header: list[str] | None = None
        self.lines = 0
        self.rows = 0

    def feed(self, chunk: bytes) -> list[Row]:
        text = self._decode(chunk, final=False)
        if self._pending:
            text = self._pending + text
        parts = text.split("\n")
        self._pending = parts.pop()
        rows = [row for part in parts if (row := self._line(part + "\n")) is not None]
        if len(self._pending) + self._record_chars > self._max:
            start = self._record_start if self._record else self.lines + 1
            raise InvalidDatasetRow(start, f"row is longer than {self._max} bytes")
        return rows

    def close(self) -> list[Row]:
        rest = self._pending + self._decode(b"", final=True)
        self._pending = ""
        rows = [row] if rest and (row := self._line(rest)) is not None else []
        if self._record:
            raise InvalidDatasetRow(
                self._record_start, "a quoted field is not closed before the end of the file"
            )
        if self.header is None:
            raise InvalidDatasetRow(max(1, self.lines), "the file is empty: a header row is required")
        if self.rows == 0:
            raise InvalidDatasetRow(self.lines + 1, "the file has a header but no rows")
        return rows

    def _decode(self, data: bytes, final: bool) -> str:
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            line = self.lines + self._pending.count("\n") + data[: max(exc.start, 0)].count(b"\n") + 1
            raise InvalidDatasetRow(line, "not valid UTF-8") from None

    def _line(self, line: str) -> Row | None:
        self.lines += 1
        if not self._record:
            self._record_start = self.lines
        self._record.append(line)
        self._record_chars += len(line)
        if self._record_chars > self._max:
            raise InvalidDatasetRow(self._record_start, f"row is longer than {self._max} bytes")
        self._quotes += line.count('"')
        if self._quotes % 2:
            if len(self._record) == 1 and _complete_record(line):
                raise InvalidDatasetRow(self._record_start, _STRAY_QUOTE)
            return None  # a quoted field goes on on the next line
        lines, start = self._record, self._record_start
        self._record, self._record_chars, self._quotes = [], 0, 0
        self._lines.queue.extend(lines)
        try:
            fields = next(self._reader)
        except csv.Error as exc:
            raise InvalidDatasetRow(start, f"not valid CSV: {exc}") from None
        except StopIteration:  # pragma: no cover - the queue holds a whole record
            raise InvalidDatasetRow(start, "not valid CSV") from None
        if self._lines.queue:  # pragma: no cover - _complete_record caught the stray quote
            self._lines.queue.clear()
            raise InvalidDatasetRow(start, _STRAY_QUOTE)
        if not fields:
            return None  # blank line
        if self.header is None:
            self.header = self._check_header(fields, start)
            return None
        if any("\x00" in cell for cell in fields):
            raise InvalidDatasetRow(start, "text cannot contain NUL (\\u0000)")
        if len(fields) != len(self.header):
            raise InvalidDatasetRow(
                start, f"row has {len(fields)} field(s); the header has {len(self.header)}"
            )
        self.rows += 1
        return start, dict(zip(self.header, fields, strict=True))

    @staticmethod
    def _check_header(names: list[str], line: int) -> list[str]:
        seen: set[str] = set()
        for name in names:
            if problem := _key_problem(name):
                raise InvalidDatasetRow(line, f"header: {problem}")
            if name in seen:
                raise InvalidDatasetRow(line, f"header: field name {name!r} appears twice")
            seen.add(name)
        return names


def reader_for(fmt: str, max_row_bytes: int = MAX_ROW_BYTES) -> JsonlReader | CsvReader:
    return JsonlReader(max_row_bytes) if fmt == "jsonl" else CsvReader(max_row_bytes)


# --- schema inference ------------------------------------------------------------------------------


# A CSV cell reads as a number or boolean only when it is exactly a JSON literal of one: `-12`,
# `3.5`, `1e-3`, `true`, `false`. Anything else (leading zeros as in ids and zip codes, `+1`,
# `TRUE`, `NaN`, surrounding blanks) is text.
_CSV_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_CSV_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def csv_cell_type(cell: str) -> str | None:
    """The JSON type a CSV cell reads as: None for an empty cell, else integer, number, boolean or string."""
    if cell == "":
        return None
    if cell in ("true", "false"):
        return "boolean"
    if _CSV_INTEGER.fullmatch(cell):
        return "integer" if _INT64[0] <= int(cell) <= _INT64[1] else "number"
    if _CSV_NUMBER.fullmatch(cell) and math.isfinite(float(cell)):
        return "number"
    return "string"


def _csv_column_type(seen: set[str]) -> list[str]:
    if not seen:
        return []
    if seen <= {"integer"}:
        return ["integer"]
    if seen <= {"integer", "number"}:
        return ["number"]
    if seen == {"boolean"}:
        return ["boolean"]
    return ["string"]


def clip_example(value: Any) -> Any:
    """A value short enough to show as an example: text cut to 200 characters, large containers left out."""
    if isinstance(value, str):
        return value if len(value) <= MAX_EXAMPLE_CHARS else value[:MAX_EXAMPLE_CHARS] + "…"
    if isinstance(value, dict | list):
        return value if len(json.dumps(value, ensure_ascii=False)) <= MAX_EXAMPLE_CHARS else None
    return value


@dataclass
class _FieldStats:
    types: set[str] = field(default_factory=set)
    nullable: bool = False
    present: int = 0
    example: Any = None
    has_example: bool = False


class SchemaBuilder:
    """Infers the schema of a file from every row, one row at a time.

    JSONL: per top-level field the JSON types of its non-null values, whether some row held null
    (`nullable`) and whether every row has it (`required`). CSV: cells are text; a column's type is
    `integer` if every non-empty cell is an integer literal, `number` if every one is an integer or
    decimal literal, `boolean` if every one is `true`/`false`, else `string`; an empty cell makes
    the column `nullable`. Examples are the first non-null value (CSV: the cell's text).
    """

    def __init__(self, fmt: str, max_fields: int = MAX_SCHEMA_FIELDS) -> None:
        self._csv = fmt == "csv"
        self._max = max_fields
        self._fields: dict[str, _FieldStats] = {}
        self._truncated = False
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        for name, value in row.items():
            stats = self._fields.get(name)
            if stats is None:
                if len(self._fields) >= self._max:
                    self._truncated = True
                    continue
                stats = self._fields[name] = _FieldStats()
            stats.present += 1
            if self._csv:
                self._add_cell(stats, value)
            elif value is None:
                stats.nullable = True
            else:
                stats.types.add(json_type(value))
                if not stats.has_example:
                    stats.example, stats.has_example = clip_example(value), True

    @staticmethod
    def _add_cell(stats: _FieldStats, cell: str) -> None:
        if cell == "":
            stats.nullable = True
            return
        if not stats.has_example:
            stats.example, stats.has_example = clip_example(cell), True
        if "string" not in stats.types:  # once text, always text: no need to look further
            stats.types.add(csv_cell_type(cell))  # type: ignore[arg-type]
            if _csv_column_type(stats.types) == ["string"]:
                stats.types = {"string"}

    def build(self) -> DatasetSchema:
        fields = [
            SchemaField(
                name=name,
                types=_csv_column_type(s.types) if self._csv else sorted(s.types),  # type: ignore[arg-type]
                nullable=s.nullable,
                required=s.present == self.rows,
                example=s.example,
            )
            for name, s in self._fields.items()
        ]
        return DatasetSchema(fields=fields, truncated=self._truncated)
