"""Where a job's rows go: a JSON Lines or Parquet file, written atomically.

Rows go to a temp file next to `path` (same directory, so the final rename never
crosses file systems); `close()` flushes, fsyncs and renames it onto `path`, then
fsyncs the directory. Until then `path` is untouched: a crash or `abort()` never
leaves a half-written output where the finished one belongs.

Values are made plain first: a pydantic model becomes its `model_dump()`, a
dataclass a dict, an Enum its value, a UUID or Path its text (see `_plain`).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
import secrets
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path, PurePath
from typing import IO, Any, Protocol, Self, runtime_checkable

from plait._errors import PlaitError
from plait.data._extras import import_pyarrow

DEFAULT_ROW_GROUP_SIZE = 10_000


class SinkError(PlaitError, ValueError):
    """A sink that cannot be opened, or a row it cannot write (the message names
    the column and what to change)."""


@runtime_checkable
class Sink(Protocol):
    path: Path

    def write(self, row: dict[str, Any]) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class _AtomicFile:
    """The temp-file-then-rename life cycle both sinks share."""

    _file: IO[bytes] | None

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser().absolute()
        if not self.path.parent.is_dir():
            raise SinkError(
                f"cannot write {self.path}: the folder {self.path.parent} does not exist"
            )
        if self.path.is_dir():
            raise SinkError(f"cannot write {self.path}: it is a folder")
        self.temp_path, self._file = _temp_beside(self.path)
        self.rows_written = 0
        self.closed = False

    def _commit(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self.temp_path, self.path)
        _fsync_dir(self.path.parent)
        self.closed = True

    def abort(self) -> None:
        """Drop what was written: the temp file goes, `path` is left as it was."""
        if self.closed:
            return
        self.closed = True
        if self._file is not None:
            self._file.close()
            self._file = None
        self.temp_path.unlink(missing_ok=True)

    def _check_open(self) -> None:
        if self.closed:
            raise SinkError(f"the sink for {self.path} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()  # type: ignore[attr-defined]
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, rows_written={self.rows_written})"


def _temp_beside(path: Path) -> tuple[Path, IO[bytes]]:
    """A new temp file next to `path`, named after it. Not mkstemp: its 0600 mode
    would pass to the output at the rename; this one gets the umask's, like any
    file the user writes."""
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise SinkError(f"cannot write beside {path}: {e.strerror or e}") from None
        return temp, os.fdopen(fd, "wb")


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory fds: the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- plain values


def _plain(value: Any, *, for_json: bool) -> Any:
    """A value JSON and Arrow understand, for the common Python types that are
    not: models and dataclasses become dicts; ids, paths, enums their value. A
    pydantic model is dumped as it renders itself in JSON for JSON Lines, and in
    Python types for Parquet (so a datetime stays a timestamp column)."""
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(mode="json" if for_json else "python")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return value


def _check_row(row: Any) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise SinkError(f"a row must be a dict of column -> value; got {type(row).__name__}")
    for name in row:
        if not isinstance(name, str):
            raise SinkError(f"column names must be strings; got {name!r} ({type(name).__name__})")
    return row


# ---------------------------------------------------------------- JSON Lines


def _json_default(value: Any) -> Any:
    plain = _plain(value, for_json=True)
    if plain is not value:
        return plain
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        raise TypeError(
            "bytes cannot be written to JSON Lines: decode them to text, base64-encode "
            "them, or write a .parquet file"
        )
    raise TypeError(f"a {type(value).__name__} cannot be written to JSON")


def _json_line(row: Mapping[str, Any]) -> bytes:
    return (
        json.dumps(row, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n"
    ).encode("utf-8")


class JsonlSink(_AtomicFile):
    """One JSON object per line, UTF-8 (not ASCII-escaped). A row with a value
    JSON cannot hold is refused whole, naming the column; nothing of it is written.
    Datetimes are written as ISO 8601 text, Decimals as text; NaN and infinity are
    refused (they are not JSON)."""

    def write(self, row: dict[str, Any]) -> None:
        self._check_open()
        _check_row(row)
        try:
            line = _json_line(row)
        except (TypeError, ValueError, UnicodeEncodeError):
            raise _json_error(row) from None
        assert self._file is not None
        self._file.write(line)
        self.rows_written += 1

    def close(self) -> None:
        if not self.closed:
            self._commit()


def _json_error(row: Mapping[str, Any]) -> SinkError:
    """The first column that cannot be written, named (found only once a row has
    failed: the fast path dumps the row whole)."""
    for name, value in row.items():
        try:
            _json_line({name: value})
        except (TypeError, ValueError, UnicodeEncodeError) as e:
            reason = str(e)
            if "Out of range float" in reason:
                reason = "NaN and infinity are not JSON numbers; write None or a string"
            elif isinstance(e, UnicodeEncodeError):
                reason = "text that is not valid Unicode (a lone surrogate)"
            return SinkError(f"column {name!r}: {reason}")
    return SinkError("the row cannot be written as JSON")


# ---------------------------------------------------------------- Parquet


class ParquetSink(_AtomicFile):
    """Rows buffered `row_group_size` at a time (memory is bounded by one group,
    whatever the dataset's size), each group written as one Parquet row group.

    Schema: inferred from the first group's values (all of its rows, every key
    that appears in any row). A later group may widen it the way Arrow promotes
    types losslessly: a column that was all null gets a type, int becomes float, a
    new column appears (null in earlier rows), a struct gains fields. The file
    written so far is then rewritten once under the wider schema (group by group,
    bounded memory); that happens once per widening, not per row. Types that do
    not promote (int in one row, str in another) are a SinkError naming the column
    and the two types: nothing is converted behind the user's back. It is raised
    when the group is written (by the `write` that fills it, or `close`), and that
    group's rows are not in the file: abort the sink."""

    def __init__(self, path: str | Path, *, row_group_size: int = DEFAULT_ROW_GROUP_SIZE):
        self._pa, self._pq = import_pyarrow("writing Parquet files")
        if not isinstance(row_group_size, int) or row_group_size < 1:
            raise SinkError(f"row_group_size must be a positive int; got {row_group_size!r}")
        super().__init__(path)
        self.row_group_size = row_group_size
        self._buffer: list[dict[str, Any]] = []
        self._writer: Any = None
        self._schema: Any = None

    def write(self, row: dict[str, Any]) -> None:
        self._check_open()
        self._buffer.append({k: _arrow_value(v) for k, v in _check_row(row).items()})
        if len(self._buffer) >= self.row_group_size:
            self._flush()

    def close(self) -> None:
        if self.closed:
            return
        if self._buffer:
            self._flush()
        if self._writer is None:  # no rows: still a valid (empty) Parquet file
            self._open_writer(self._pa.schema([]))
        self._writer.close()
        self._commit()

    def abort(self) -> None:
        if self._writer is not None and not self.closed:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away anyway
                pass
        super().abort()

    def _open_writer(self, schema: Any) -> None:
        assert self._file is not None
        self._schema = schema
        self._writer = self._pq.ParquetWriter(self._file, schema)

    def _flush(self) -> None:
        rows, self._buffer = self._buffer, []
        first = self.rows_written
        table = self._table(rows, None, first)
        if self._writer is None:
            self._open_writer(table.schema)
        elif table.schema != self._schema:
            wider = self._unify(table.schema, first)
            if wider != self._schema:
                self._rewrite(wider)
            table = self._table(rows, self._schema, first)
        try:
            self._writer.write_table(table)
        except self._pa.ArrowException as e:  # e.g. an empty struct: Parquet has none
            raise SinkError(
                f"rows {first}..{first + len(rows) - 1}: cannot write Parquet: {e}"
            ) from None
        self.rows_written += len(rows)

    def _table(self, rows: list[dict[str, Any]], schema: Any, first: int) -> Any:
        pa = self._pa
        names = (
            schema.names if schema is not None else list(dict.fromkeys(k for r in rows for k in r))
        )
        columns = []
        for i, name in enumerate(names):
            values = [r.get(name) for r in rows]
            try:
                columns.append(pa.array(values, type=schema.field(i).type if schema else None))
            except (pa.ArrowException, OverflowError) as e:
                raise SinkError(
                    f"column {name!r} (rows {first}..{first + len(rows) - 1}): {e}; give the "
                    "column one type in every row (e.g. str(value)), or write JSON Lines"
                ) from None
        return pa.Table.from_arrays(columns, names=names)

    def _unify(self, schema: Any, first: int) -> Any:
        pa = self._pa
        try:
            return pa.unify_schemas([self._schema, schema], promote_options="permissive")
        except pa.ArrowException as e:
            raise SinkError(
                f"rows from {first} on do not fit the Parquet schema of the rows before: {e}; "
                "give the column one type in every row (e.g. str(value)), or write JSON Lines"
            ) from None

    def _rewrite(self, schema: Any) -> None:
        """Rewrite the rows written so far under `schema` into a fresh temp file."""
        assert self._file is not None
        self._writer.close()
        self._file.close()
        old = self.temp_path
        self.temp_path, self._file = _temp_beside(self.path)
        self._open_writer(schema)
        done = 0
        with self._pq.ParquetFile(old) as pf:
            for group in range(pf.num_row_groups):
                rows = pf.read_row_group(group).to_pylist()
                self._writer.write_table(self._table(rows, schema, done))
                done += len(rows)
        old.unlink()


# Types Arrow converts as they are: checked by exact type first, since most values
# of most rows are one of these and `_plain`'s checks cost more than the write.
_ARROW_ATOMS = frozenset(
    {str, int, float, bool, type(None), bytes, datetime.datetime, datetime.date, Decimal}
)


def _arrow_value(value: Any) -> Any:
    kind = type(value)
    if kind in _ARROW_ATOMS:
        return value
    if kind is not dict and kind is not list:
        value = _plain(value, for_json=False)
    if isinstance(value, dict):
        return {str(k): _arrow_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_arrow_value(v) for v in value]
    return value


# ---------------------------------------------------------------- open

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def open_sink(path: str | Path, *, format: str | None = None, **options: Any) -> Sink:
    """A sink writing `path`, its format by suffix (.jsonl/.ndjson, .parquet) or
    `format="jsonl" | "parquet"`. Parquet takes `row_group_size=` (rows)."""
    fmt = format or _FORMATS.get(Path(path).suffix.lower())
    if fmt == "jsonl":
        if options:
            raise SinkError(f"options {', '.join(sorted(options))} do not apply to JSON Lines")
        return JsonlSink(path)
    if fmt == "parquet":
        return ParquetSink(path, **options)
    raise SinkError(
        f"cannot tell the output format of {path}"
        + (f" (format={format!r})" if format else "")
        + ': name it .jsonl or .parquet, or pass format="jsonl" | "parquet"'
    )
