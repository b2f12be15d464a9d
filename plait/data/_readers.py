"""File sources: JSON Lines (optionally gzipped), CSV and Parquet, each read lazily.

Ordinals count rows, not lines: blank lines (JSONL and CSV) are skipped and do
not take an ordinal, so the ordinals of a file are 0..n-1 with no gaps (a runner
that emits in row order never waits for a row that does not exist). Error messages
name the physical line ("line 17: ...") so the user can find it in an editor.
Positions are stable for a given file content, which `fingerprint()` pins down.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from plait.data._extras import import_pyarrow
from plait.data._source_base import (
    SourceError,
    SourceRow,
    SyncSource,
    existing_file,
    file_sha256,
    human_size,
    json_type,
)

DEFAULT_MAX_ROW_BYTES = 1_000_000
_DRAIN_CHUNK = 1 << 20


class _Lines:
    """The lines of a binary file, each at most `limit` bytes in memory.

    A longer line is drained in chunks and reported as over the limit (its bytes
    are not kept): a 2 GB line without a newline costs 1 MB of memory, not 2 GB.
    For CSV, `text()` gives str lines, and `take()` the size and over-limit flag of
    the lines read since the last call (one record's lines: the csv module pulls
    lines only as it needs them, never ahead)."""

    def __init__(self, f: IO[bytes], limit: int, quotechar: str | None = None):
        self._f = f
        self._limit = limit
        self._quote = quotechar.encode() if quotechar else b""
        self.lineno = 0  # physical lines read so far
        self._odd_quotes = False  # in the last over-long line
        self._bytes = 0
        self._over = False

    def __iter__(self) -> Iterator[tuple[int, bytes | None, int]]:
        """(line number, the line's bytes or None when over the limit, its size)."""
        # limit + 2: room for the limit and a CRLF, so the line ending never counts.
        while raw := self._f.readline(self._limit + 2):
            self.lineno += 1
            if self.lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            content = len(raw) - _ending(raw)
            if content <= self._limit:
                yield self.lineno, raw, content
                continue
            size, tail = len(raw), raw
            quotes = raw.count(self._quote) if self._quote else 0
            while not tail.endswith(b"\n") and (tail := self._f.readline(_DRAIN_CHUNK)):
                size += len(tail)
                quotes += tail.count(self._quote) if self._quote else 0
            self._odd_quotes = quotes % 2 == 1
            yield self.lineno, None, size - _ending(tail)

    def text(self) -> Iterator[str]:
        """Lines as str for the csv module. Bytes that are not UTF-8 survive as
        lone surrogates (surrogateescape), so a bad record is found on its own
        instead of a decode error ending the whole file. An over-long line becomes
        a stand-in, `#` (not blank: a blank line is no record), after a quote if
        it held an odd number of quotes: the parser then leaves it in the same
        quoting state as the real line would, and the records after it parse as
        they should."""
        for _, raw, size in self:
            self._bytes += size
            if raw is None:
                self._over = True
                raw = (self._quote if self._odd_quotes else b"") + b"#\n"
            yield raw.decode("utf-8", "surrogateescape")

    def take(self) -> tuple[int, bool]:
        taken = self._bytes, self._over
        self._bytes, self._over = 0, False
        return taken


def _ending(raw: bytes) -> int:
    return 2 if raw.endswith(b"\r\n") else 1 if raw.endswith(b"\n") else 0


def _over(where: str, size: int, limit: int) -> str:
    return f"{where}: {human_size(size)}, over max_row_bytes ({human_size(limit)})"


def _check_limit(max_row_bytes: int) -> int:
    if not isinstance(max_row_bytes, int) or isinstance(max_row_bytes, bool) or max_row_bytes < 1:
        raise SourceError(f"max_row_bytes must be a positive int of bytes; got {max_row_bytes!r}")
    return max_row_bytes


# ---------------------------------------------------------------- JSON Lines


class JsonlSource(SyncSource):
    """One JSON object per line (`.jsonl`, `.ndjson`; `.gz` read through gzip)."""

    def __init__(self, path: str | Path, *, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES):
        self.path = existing_file(path, "JSON Lines file")
        self.max_row_bytes = _check_limit(max_row_bytes)
        self.description = {
            "kind": "jsonl",
            "path": str(self.path),
            "max_row_bytes": self.max_row_bytes,
        }
        with self._open() as f:  # a gzip file that is not one fails here, not mid-job
            f.read(1)

    def _open(self) -> IO[bytes]:
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rb")
        return open(self.path, "rb")

    def fingerprint(self) -> str:
        return file_sha256(self.path)

    def _lines(self, f: IO[bytes]) -> Iterator[tuple[int, bytes | None, int]]:
        lines = _Lines(f, self.max_row_bytes)
        try:
            yield from lines
        except (OSError, EOFError, zlib.error) as e:  # a truncated .gz, a failing disk
            raise SourceError(
                f"{self.path} cannot be read after line {lines.lineno}: {e}"
            ) from None

    def iter_rows(self, start: int = 0) -> Iterator[SourceRow]:
        ordinal = 0
        with self._open() as f:
            for lineno, raw, size in self._lines(f):
                if raw is not None and not raw.strip():
                    continue  # a blank line is not a row: it takes no ordinal
                if ordinal >= start:
                    yield self._row(ordinal, lineno, raw, size)
                ordinal += 1

    def count_rows(self) -> int:
        """The number of rows: lines that are not blank, counted without parsing."""
        with self._open() as f:
            return sum(raw is None or bool(raw.strip()) for _, raw, _ in self._lines(f))

    def _row(self, ordinal: int, lineno: int, raw: bytes | None, size: int) -> SourceRow:
        where = f"line {lineno}"
        if raw is None:
            return SourceRow(ordinal, None, _over(where, size, self.max_row_bytes))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = raw[e.start]
            return SourceRow(
                ordinal,
                None,
                f"{where}: not valid UTF-8 (byte 0x{bad:02x} at column {e.start + 1})",
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            return SourceRow(
                ordinal, None, f"{where}: not valid JSON ({e.msg} at column {e.colno})"
            )
        except RecursionError:
            return SourceRow(ordinal, None, f"{where}: not valid JSON (nested too deeply)")
        if not isinstance(value, dict):
            return SourceRow(ordinal, None, f"{where}: not a JSON object ({json_type(value)})")
        return SourceRow(ordinal, value)


def read_jsonl(path: str | Path, *, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES) -> JsonlSource:
    """A JSON Lines file, one object per line, read lazily. A line that is not
    UTF-8, not JSON, not an object, or over `max_row_bytes` is a row error; blank
    lines are skipped (they take no ordinal)."""
    return JsonlSource(path, max_row_bytes=max_row_bytes)


# ---------------------------------------------------------------- CSV

_CSV_OPTIONS = frozenset(
    {
        "dialect",
        "delimiter",
        "doublequote",
        "escapechar",
        "lineterminator",
        "quotechar",
        "quoting",
        "skipinitialspace",
        "strict",
    }
)
# A str field holding bytes that were not UTF-8 (decoded with surrogateescape).
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


class CsvSource(SyncSource):
    """A CSV file whose header row names the columns; values are strings."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
        **csv_options: Any,
    ):
        self.path = existing_file(path, "CSV file")
        self.max_row_bytes = _check_limit(max_row_bytes)
        unknown = sorted(set(csv_options) - _CSV_OPTIONS)
        if unknown:
            raise SourceError(
                f"unknown CSV option {', '.join(unknown)}: read_csv takes the csv module's "
                f"format parameters ({', '.join(sorted(_CSV_OPTIONS))})"
            )
        try:
            json.dumps(csv_options)
            csv.reader([], **csv_options)
        except (TypeError, ValueError, csv.Error) as e:
            raise SourceError(
                f"CSV options {csv_options}: {e} (options must be plain values, such as "
                "delimiter=';', so that a resumed run reopens the file the same way)"
            ) from None
        self.csv_options = csv_options
        self._quotechar = csv.reader([], **csv_options).dialect.quotechar
        self.description = {
            "kind": "csv",
            "path": str(self.path),
            "max_row_bytes": self.max_row_bytes,
            "csv_options": dict(csv_options),
        }
        # The csv module refuses fields over its limit (128 KiB by default); rows are
        # bounded by max_row_bytes instead. The limit is process-wide: only ever raised.
        if csv.field_size_limit() < self.max_row_bytes:
            csv.field_size_limit(self.max_row_bytes)
        with open(self.path, "rb") as f:
            self.columns = self._header(f)[0]

    def _header(self, f: IO[bytes]) -> tuple[list[str], _Lines, Iterator[list[str]]]:
        lines = _Lines(f, self.max_row_bytes, self._quotechar)
        reader = csv.reader(lines.text(), **self.csv_options)
        try:
            header = next(reader)
        except StopIteration:
            raise SourceError(f"CSV file {self.path} is empty: it needs a header row") from None
        except csv.Error as e:
            raise SourceError(
                f"CSV file {self.path}: the header row is not valid CSV ({e})"
            ) from None
        _, over = lines.take()
        if over or any(_NOT_UTF8.search(name) for name in header):
            raise SourceError(f"CSV file {self.path}: the header row is not valid UTF-8 text")
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates or not header:
            raise SourceError(
                f"CSV file {self.path}: the header row must name each column once"
                + (f"; {', '.join(map(repr, duplicates))} repeated" if duplicates else "")
            )
        return header, lines, reader

    def fingerprint(self) -> str:
        return file_sha256(self.path)

    def iter_rows(self, start: int = 0) -> Iterator[SourceRow]:
        with open(self.path, "rb") as f:
            header, lines, reader = self._header(f)
            for ordinal, record in enumerate(_records(lines, reader)):
                if ordinal >= start:
                    yield self._row(ordinal, header, *record)

    def count_rows(self) -> int:
        """The number of rows, by parsing the records without building rows."""
        with open(self.path, "rb") as f:
            _, lines, reader = self._header(f)
            return sum(1 for _ in _records(lines, reader))

    def _row(
        self,
        ordinal: int,
        header: list[str],
        lineno: int,
        fields: list[str] | None,
        error: str | None,
        size: int,
        over: bool,
    ) -> SourceRow:
        where = f"line {lineno}"
        if over or size > self.max_row_bytes:
            return SourceRow(ordinal, None, _over(where, size, self.max_row_bytes))
        if fields is None:
            return SourceRow(ordinal, None, f"{where}: {error}")
        if any(_NOT_UTF8.search(value) for value in fields):
            return SourceRow(ordinal, None, f"{where}: not valid UTF-8")
        if len(fields) != len(header):
            return SourceRow(
                ordinal, None, f"{where}: {_fields(len(fields))}, the header has {len(header)}"
            )
        return SourceRow(ordinal, dict(zip(header, fields, strict=True)))


def _records(
    lines: _Lines, reader: Iterator[list[str]]
) -> Iterator[tuple[int, list[str] | None, str | None, int, bool]]:
    """(first line, fields or None, the parse error, size in bytes, over the limit)
    of each record that is not a blank line."""
    while True:
        first_line = lines.lineno + 1
        try:
            fields, error = next(reader), None
        except StopIteration:
            return
        except csv.Error as e:
            fields, error = None, f"not valid CSV ({e})"
        size, over = lines.take()
        if fields != []:  # a blank line is not a row: it takes no ordinal
            yield first_line, fields, error, size, over


def _fields(n: int) -> str:
    return "1 field" if n == 1 else f"{n} fields"


def read_csv(
    path: str | Path, *, max_row_bytes: int = DEFAULT_MAX_ROW_BYTES, **csv_options: Any
) -> CsvSource:
    """A CSV file read lazily with the stdlib csv module (`csv_options` are its
    format parameters: delimiter, quotechar, ...). The header row gives the keys;
    values are strings. A record that is not UTF-8, has the wrong number of fields
    or is over `max_row_bytes` is a row error; blank lines are skipped."""
    return CsvSource(path, max_row_bytes=max_row_bytes, **csv_options)


# ---------------------------------------------------------------- Parquet


class ParquetSource(SyncSource):
    """A Parquet file read one batch at a time (pyarrow), row group by row group."""

    def __init__(self, path: str | Path, *, batch_size: int = 1024):
        self.path = existing_file(path, "Parquet file")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise SourceError(f"batch_size must be a positive int; got {batch_size!r}")
        self.batch_size = batch_size
        self.description = {"kind": "parquet", "path": str(self.path), "batch_size": batch_size}
        pf = self._open()
        self.num_rows: int = pf.metadata.num_rows
        pf.close()

    def _open(self) -> Any:
        pa, pq = import_pyarrow("reading Parquet files")
        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as e:
            raise SourceError(f"{self.path} is not a readable Parquet file: {e}") from None

    def fingerprint(self) -> str:
        return file_sha256(self.path)

    def count_rows(self) -> int:
        return self.num_rows

    def iter_rows(self, start: int = 0) -> Iterator[SourceRow]:
        pa, _ = import_pyarrow("reading Parquet files")
        pf = self._open()
        try:
            first = 0  # the ordinal of the group's first row
            for group in range(pf.num_row_groups):
                size = pf.metadata.row_group(group).num_rows
                if first + size <= start:  # skipped from the footer: no data read
                    first += size
                    continue
                ordinal = first
                try:
                    for batch in pf.iter_batches(self.batch_size, row_groups=[group]):
                        for row in _batch_rows(batch, ordinal):
                            if row.ordinal >= start:
                                yield row
                        ordinal += batch.num_rows
                except (pa.ArrowException, OSError) as e:
                    # A group that cannot be decoded: each of its rows not yet given
                    # is an error, so the ordinals of later groups stay right.
                    for o in range(max(ordinal, start), first + size):
                        yield SourceRow(o, None, f"row group {group}: cannot be read ({e})")
                first += size
        finally:
            pf.close()


def _batch_rows(batch: Any, first: int) -> Iterator[SourceRow]:
    try:
        rows = batch.to_pylist()
    except Exception:  # noqa: BLE001 - one value Python cannot hold; find which row
        for i in range(batch.num_rows):
            try:
                yield SourceRow(first + i, batch.slice(i, 1).to_pylist()[0])
            except Exception as e:  # noqa: BLE001 - e.g. a date out of Python's range
                yield SourceRow(first + i, None, f"row {first + i}: cannot be converted ({e})")
        return
    for i, data in enumerate(rows):
        yield SourceRow(first + i, data)


def read_parquet(path: str | Path, *, batch_size: int = 1024) -> ParquetSource:
    """A Parquet file read lazily, `batch_size` rows at a time (needs the `data`
    extra: pyarrow). A row whose values Python cannot hold is a row error."""
    return ParquetSource(path, batch_size=batch_size)
