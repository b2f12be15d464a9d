"""Choose a journal by one string."""

from __future__ import annotations

import os

from plait.journal._protocol import Journal, JournalError

__all__ = ["open_journal"]

_SQLITE_URL = "sqlite://"
_POSTGRES_URLS = ("postgresql://", "postgres://")


def open_journal(spec: str | os.PathLike[str], *, read_only: bool = False) -> Journal:
    """Open (creating if needed) the journal named by `spec`:

    * ``runs.db``, ``path/to/file.sqlite``, any other path: a SQLite file (its
      directory must exist); ``:memory:`` is a throwaway in-memory journal.
    * ``sqlite:///abs/path.db``: a SQLite file by URL (absolute path).
    * ``postgresql://user:pw@host:port/db`` or ``postgres://...``: PostgreSQL
      (needs ``pip install 'plait[postgres]'``). Add ``?schema=NAME`` to choose
      the schema (default ``plait``); other query parameters go to libpq.

    Anything else with a ``scheme://`` is a `JournalError`.

    ``read_only=True`` opens an existing journal to read it and never writes to
    it: nothing is created or migrated, and a write raises (the database refuses
    it). A live run writing the same journal is not held up.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise JournalError(f"a journal is named by a string or a path, not {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise JournalError("empty journal name: give a file like runs.db or a postgresql:// URL")
    lower = text.lower()
    if lower.startswith(_POSTGRES_URLS):
        from plait.journal._postgres import PostgresJournal

        return PostgresJournal(text, read_only=read_only)
    if lower.startswith(_SQLITE_URL):
        path = text[len(_SQLITE_URL) :]
        if not path.startswith("/"):
            raise JournalError(
                f"bad SQLite journal URL {spec!r}: use sqlite:///absolute/path.db "
                "(three slashes) or just a file path"
            )
        from plait.journal._sqlite import SQLiteJournal

        return SQLiteJournal(path, read_only=read_only)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise JournalError(
            f"unknown journal scheme {scheme!r} in {_safe(text)}: use a file path "
            "(runs.db), sqlite:///abs/path.db or postgresql://..."
        )
    from plait.journal._sqlite import SQLiteJournal

    return SQLiteJournal(text, read_only=read_only)


def _safe(text: str) -> str:
    from plait.journal._postgres import redact

    return repr(redact(text))
