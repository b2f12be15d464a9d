"""How a command ends on a user mistake or bad input: one `error: ...` line on
stderr and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

import typer

from plait._errors import PlaitError
from plait.journal import JournalError


def fail(message: str) -> NoReturn:
    # One line, whatever the message holds: the last line a user sees is the error.
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise typer.Exit(2)


def about_journal(exc: PlaitError, location: str) -> str:
    """The error's message, naming the journal if it is the journal's and does not
    (a journal's messages name it, but for a value that would not decode)."""
    text = str(exc)
    if isinstance(exc, JournalError) and "journal" not in text:
        return f"journal {location}: {text}"
    return text


@contextlib.contextmanager
def journal_errors(location: str) -> Iterator[None]:
    """A journal that cannot be read (damaged, missing a run, unreachable) ends the
    command with one line that names it."""
    try:
        yield
    except PlaitError as exc:
        fail(about_journal(exc, location))
