"""The journal: every call written twice, an intent before it starts and a result
after it ends, so a run killed at any instant resumes without re-running a
finished call. SQLite by default, PostgreSQL with ``plait[postgres]``.

    journal = open_journal("runs.db")          # or "postgresql://.../db?schema=plait"
    journal.create_run(RunRecord(run_id, entry="brief", arguments={"topic": "x"}))
    writer = JournalWriter(journal)            # group commit from asyncio
    await writer.intents([Intent(run_id, key, "search", {"q": "x"})])
    writer.result(Result(run_id, key, ok=True, value="..."))
    state = journal.load(run_id)               # intents, results, in_doubt

A dataset job is one run; each row's calls carry its key (`Intent.row_key`), its
outcome is a `RowRecord` (`writer.row(record)`, after the row's last result), and a
resumed job asks `journal.row_status(run_id, keys)` chunk by chunk.

See docs/journal.md.
"""

from plait.journal._open import open_journal
from plait.journal._postgres import PostgresJournal
from plait.journal._protocol import (
    INLINE_LIMIT,
    Encoded,
    Intent,
    Journal,
    JournalError,
    JournalOrderError,
    JournalState,
    JournalTransientError,
    JournalValueError,
    Lease,
    Result,
    RowRecord,
    RowStatus,
    RunNotFoundError,
    RunOwnedError,
    RunRecord,
    RunStatus,
    StaleLeaseError,
    decode_value,
    encode_value,
    error_text,
)
from plait.journal._sqlite import SQLiteJournal
from plait.journal._writer import JournalWriter

__all__ = [
    "INLINE_LIMIT",
    "Encoded",
    "Intent",
    "Journal",
    "JournalError",
    "JournalOrderError",
    "JournalTransientError",
    "JournalState",
    "JournalValueError",
    "JournalWriter",
    "Lease",
    "PostgresJournal",
    "Result",
    "RowRecord",
    "RowStatus",
    "RunNotFoundError",
    "RunOwnedError",
    "RunRecord",
    "RunStatus",
    "SQLiteJournal",
    "StaleLeaseError",
    "decode_value",
    "encode_value",
    "error_text",
    "open_journal",
]
