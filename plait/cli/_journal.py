"""Which journal a command uses, and how a command names it back to the user.

Every CLI run is journaled (as simonw/llm logs every prompt), so every run can
be resumed: `--journal SPEC` on the command line, else `$PLAIT_JOURNAL`, else the
per-user journal, `journal.db` in plait's user data directory (platformdirs;
`$XDG_DATA_HOME/plait` when that is set, on every platform, so a test or a
sandbox can move it). `plait ask`/`plait run --no-journal` journal nothing. The
Python API journals only when given `journal=`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import platformdirs

from plait._errors import PlaitError
from plait.cli._fail import fail, journal_errors
from plait.journal import Journal, open_journal
from plait.journal._postgres import redact

ENV = "PLAIT_JOURNAL"
HELP = "SQLite file or postgresql:// DSN (default: $PLAIT_JOURNAL, else the per-user journal)"
WRITE_HELP = ("journal every call to this SQLite file or postgresql:// DSN "
              "(default: $PLAIT_JOURNAL, else the per-user journal; see --no-journal)")
NO_JOURNAL_HELP = "journal nothing (the run cannot be resumed)"


def default_journal() -> str:
    """The per-user journal: <user data dir>/plait/journal.db."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) / "plait" if os.path.isabs(xdg) else platformdirs.user_data_path("plait")
    return str(base / "journal.db")


def journal_option() -> str:
    """The journal a command uses when given no --journal."""
    return os.environ.get(ENV) or default_journal()


def for_run(journal: str | None, no_journal: bool) -> str | None:
    """The journal `plait ask`/`plait run` write to, or None with --no-journal.
    The default journal's directory is made on first use (a fresh machine)."""
    if no_journal:
        if journal is not None:
            fail("--journal and --no-journal contradict each other: give one")
        return None
    spec = journal or journal_option()
    if spec == default_journal():
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return spec


def resume_hint(run_id: str, journal: str | None, extra: Sequence[str] = ()) -> str:
    """For a run that stopped before its end: how to continue it, as a command that
    works verbatim in this shell (no --journal when `plait resume` would find the
    journal by itself; a DSN's password is never shown). `extra`: options the
    journal does not hold (a question's `--mcp` servers)."""
    if journal is None:
        return ""
    command = ["plait", "resume", run_id]
    if journal != journal_option():
        command += ["--journal", redact(journal)]
    command += extra
    return f"; resume run {run_id} with: {shlex.join(command)}"


def open_existing(spec: str) -> Journal:
    """An existing journal, for a command that reads it: never creates one, and an
    error reading it (a damaged file, a lost connection) ends the command with one
    line naming the journal."""
    path = _sqlite_path(spec)
    if path is not None and (not path.exists() or path.is_file() and not path.stat().st_size):
        env = os.environ.get(ENV)
        given = (" (from $PLAIT_JOURNAL)" if spec == env
                 else " (the default)" if not env and spec == default_journal() else "")
        fail(f"no journal at {path.absolute()}{given}: nothing was journaled there. Name one "
             "with --journal FILE or a postgresql:// DSN, or set PLAIT_JOURNAL; "
             "`plait run` or `plait ask` with the same journal creates it")
    try:
        journal = open_journal(spec)
    except PlaitError as exc:
        fail(str(exc))
    return cast(Journal, _Reading(journal))


def _sqlite_path(spec: str) -> Path | None:
    """The file a journal spec names, or None (PostgreSQL, in memory, a bad URL:
    `open_journal` says what is wrong with those)."""
    text = spec.strip()
    if text.lower().startswith("sqlite://"):
        text = text[len("sqlite://") :]
        if not text.startswith("/"):
            return None
    elif "://" in text or text in ("", ":memory:"):
        return None
    return Path(text).expanduser()


class _Reading:
    """A journal whose every method maps its errors to one `error: ...` line, so
    the commands that read it (and any read added to them) need no handler each."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._journal, name)
        if not callable(attr):
            return attr
        location = self._journal.location

        def call(*args: Any, **kwargs: Any) -> Any:
            with journal_errors(location):
                return attr(*args, **kwargs)

        return call
