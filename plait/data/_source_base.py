"""What every dataset source yields and promises, shared by the file readers and
the in-memory sources.

A source is re-openable data read lazily: rows come one at a time, so a 1M-row
file never sits in memory. A row that cannot be read is a `SourceRow` with
`data=None` and an `error`, at its own ordinal, and the rows after it still come:
one bad row never ends a job. Only what makes the whole source unusable (a
missing file, an unreadable header) raises, when the source is opened.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from plait._errors import PlaitError


class SourceError(PlaitError, ValueError):
    """A source that cannot be used at all: a missing file, an unreadable header,
    an unknown kind of input. A bad row is never this: it is a `SourceRow` error."""


@dataclass(frozen=True, slots=True)
class SourceRow:
    ordinal: int  # 0-based position among the source's rows (blank lines are not rows)
    data: dict[str, Any] | None  # the row, or None when it could not be read
    error: str | None = None  # why not, naming where: "line 17: not valid UTF-8"


@runtime_checkable
class Source(Protocol):
    """Rows to map over. `description` is JSON-able and reopens the source on
    resume (`reopen_source`); `fingerprint()` is None where positions are not
    stable (an iterable), so rows then need a key column."""

    description: dict[str, Any]

    def fingerprint(self) -> str | None:
        """A hash of the content (a file's sha256, read in chunks: for a big file,
        call it off the event loop), or None when positions are not stable."""
        ...

    def count_rows(self) -> int | None:
        """How many rows (for progress and ETA), without building them; None when
        unknown without consuming the source. May read the whole file: call it
        off the event loop for a big one."""
        ...

    def aiter_rows(self, start: int = 0) -> AsyncIterator[SourceRow]:
        """The rows from ordinal `start` on; earlier ones are skipped as cheaply as
        the format allows (Parquet row groups from the footer, Dataset slices,
        text lines without parsing them)."""
        ...


class SyncSource:
    """A source read by blocking calls (files, a Dataset): `iter_rows` is the one
    method to write; iteration and the async form wrap it.

    Reading runs on the event loop's thread, without a thread hop per row: one row
    is one small read, and the runner pulls at most a window of rows ahead."""

    description: dict[str, Any]

    def fingerprint(self) -> str | None:
        raise NotImplementedError

    def count_rows(self) -> int | None:
        raise NotImplementedError

    def iter_rows(self, start: int = 0) -> Iterator[SourceRow]:
        """The rows from ordinal `start` on (earlier ones are skipped as cheaply as
        the format allows: without parsing them)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[SourceRow]:
        return self.iter_rows()

    async def aiter_rows(self, start: int = 0) -> AsyncIterator[SourceRow]:
        for row in self.iter_rows(start):
            yield row

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"


def file_sha256(path: Path) -> str:
    """The content hash of a file, read in chunks (never whole in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def existing_file(path: str | Path, what: str) -> Path:
    """`path` made absolute (so the description reopens it from any directory),
    or a clear error when it is not a readable file."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise SourceError(f"{what} not found: {p}")
    if not p.is_file():
        raise SourceError(f"{what} is not a file: {p}")
    try:
        open(p, "rb").close()
    except OSError as e:  # no permission, a broken mount
        raise SourceError(f"{what} cannot be read: {p}: {e.strerror or e}") from None
    return p


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for "not a JSON object (an array)"."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"
