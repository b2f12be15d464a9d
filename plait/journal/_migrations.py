"""Append-only, named schema migrations for both backends.

Each backend has an ordered list of migrations. A table `_plait_migrations`
records the names already applied; opening a journal applies the missing ones,
each once, in order, in one transaction with the check. A journal that records a
migration this plait does not know was written by a newer plait: it is refused
rather than misread.

RULES: never edit, reorder or remove a migration once released; add a new one at
the end. Names are "NNN_what" so the order is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plait.journal._protocol import JournalError

MIGRATIONS_TABLE = "_plait_migrations"


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    statements: tuple[str, ...]


def pending(applied: Sequence[str], known: Sequence[Migration], location: str) -> list[Migration]:
    """Migrations still to apply, in order; refuses journals from a newer plait."""
    names = [m.name for m in known]
    unknown = [n for n in applied if n not in names]
    if unknown:
        raise JournalError(
            f"journal {location} was written by a newer version of plait "
            f"(unknown schema migrations: {', '.join(sorted(unknown))}); upgrade plait to open it"
        )
    done = set(applied)
    return [m for m in known if m.name not in done]


def check_read_only(applied: Sequence[str], known: Sequence[Migration], location: str) -> None:
    """A journal opened read-only is read as it is: one that lacks a migration
    cannot be read by this plait, and is not changed to be."""
    missing = [m.name for m in pending(applied, known, location)]
    if not applied:
        raise JournalError(f"no journal at {location}: nothing was journaled there")
    if missing:
        raise JournalError(
            f"journal {location} was written by an older plait (schema migrations "
            f"{', '.join(missing)} not applied); it is opened read-only here, so it is not "
            "changed: open it once with a command that writes (`plait runs --journal ...`, "
            "`plait resume`) to upgrade it"
        )


def not_a_journal(location: str, tables: Sequence[str]) -> JournalError:
    shown = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
    return JournalError(
        f"{location} is not a plait journal: it already holds other tables ({shown}) "
        f"and no {MIGRATIONS_TABLE} table; use a new file (or schema) for the journal"
    )


# --- SQLite ---------------------------------------------------------------------------

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "001_initial",
        (
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY,
                entry TEXT NOT NULL,
                arguments TEXT NOT NULL,
                status TEXT NOT NULL,
                code_version TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                finished_at REAL,
                tokens INTEGER NOT NULL DEFAULT 0,
                error TEXT
            )""",
            "CREATE INDEX runs_by_created ON runs (created_at DESC, run_id DESC)",
            """CREATE TABLE blobs (
                hash TEXT PRIMARY KEY,
                data TEXT NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE intents (
                run_id TEXT NOT NULL,
                key TEXT NOT NULL,
                tool TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                started_at REAL NOT NULL,
                arguments TEXT,
                arguments_hash TEXT,
                PRIMARY KEY (run_id, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE results (
                run_id TEXT NOT NULL,
                key TEXT NOT NULL,
                ok INTEGER NOT NULL,
                value TEXT,
                value_hash TEXT,
                error TEXT,
                started_at REAL NOT NULL,
                finished_at REAL NOT NULL,
                tokens INTEGER NOT NULL,
                extra TEXT NOT NULL,
                PRIMARY KEY (run_id, key)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        "002_leases",
        (
            # One row per run ever owned. Releasing keeps the row (owner "") so the
            # epoch only grows: a write fenced by an old epoch never matches again.
            # No foreign key: a fresh run's lease is taken before the run is created,
            # so two processes starting one run id cannot both create it.
            """CREATE TABLE leases (
                run_id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                epoch INTEGER NOT NULL,
                ttl REAL NOT NULL,
                acquired_at REAL NOT NULL,
                heartbeat_at REAL NOT NULL
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        "003_rows",
        (
            # Dataset jobs. A call of a row carries the row's key on its intent (NULL
            # for a plain run's call, so the partial index holds only row calls, and
            # `row_key = ?` implies its condition). Results are found through their
            # intents: every result has one.
            "ALTER TABLE intents ADD COLUMN row_key TEXT",
            "CREATE INDEX intents_by_row ON intents (run_id, row_key) WHERE row_key IS NOT NULL",
            # One outcome per row, replaced when a failed row is retried.
            """CREATE TABLE rows (
                run_id TEXT NOT NULL,
                row_key TEXT NOT NULL,
                ordinal INTEGER NOT NULL,
                status TEXT NOT NULL,
                value TEXT,
                value_hash TEXT,
                error TEXT,
                tokens INTEGER NOT NULL,
                finished_at REAL NOT NULL,
                PRIMARY KEY (run_id, row_key)
            ) WITHOUT ROWID""",
            "CREATE INDEX rows_by_ordinal ON rows (run_id, ordinal)",
            "CREATE INDEX rows_by_status ON rows (run_id, status, ordinal)",
        ),
    ),
    Migration(
        "004_calls_by_row",
        (
            # Calls clustered by their row. A node key is a content hash, so with
            # (run_id, key) as the clustering key each of a job's intents and results
            # landed on a random page of a large table: a commit wrote as many pages
            # as it had records, and the cost per row grew with the file. Keyed by
            # (run_id, row_key, key), the rows in flight share pages; only the
            # narrow (run_id, key) index, which keeps a key unique in its run, stays
            # random. A plain run's calls have the row key "" (a key column is never
            # NULL). A result is stored under its intent's row key.
            """CREATE TABLE intents_by_row_key (
                run_id TEXT NOT NULL,
                row_key TEXT NOT NULL,
                key TEXT NOT NULL,
                tool TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                started_at REAL NOT NULL,
                arguments TEXT,
                arguments_hash TEXT,
                PRIMARY KEY (run_id, row_key, key)
            ) WITHOUT ROWID""",
            "INSERT INTO intents_by_row_key SELECT run_id, coalesce(row_key, ''), key, tool, "
            "attempt, started_at, arguments, arguments_hash FROM intents",
            """CREATE TABLE results_by_row_key (
                run_id TEXT NOT NULL,
                row_key TEXT NOT NULL,
                key TEXT NOT NULL,
                ok INTEGER NOT NULL,
                value TEXT,
                value_hash TEXT,
                error TEXT,
                started_at REAL NOT NULL,
                finished_at REAL NOT NULL,
                tokens INTEGER NOT NULL,
                extra TEXT NOT NULL,
                PRIMARY KEY (run_id, row_key, key)
            ) WITHOUT ROWID""",
            "INSERT INTO results_by_row_key SELECT r.run_id, coalesce((SELECT i.row_key "
            "FROM intents i WHERE i.run_id = r.run_id AND i.key = r.key), ''), r.key, r.ok, "
            "r.value, r.value_hash, r.error, r.started_at, r.finished_at, r.tokens, r.extra "
            "FROM results r",
            "DROP TABLE intents",  # its index intents_by_row with it
            "DROP TABLE results",
            "ALTER TABLE intents_by_row_key RENAME TO intents",
            "ALTER TABLE results_by_row_key RENAME TO results",
            "CREATE UNIQUE INDEX intents_by_key ON intents (run_id, key)",
        ),
    ),
)

# --- PostgreSQL (``{s}`` is the quoted schema name) -----------------------------------

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "001_initial",
        (
            """CREATE TABLE {s}.runs (
                run_id TEXT PRIMARY KEY,
                entry TEXT NOT NULL,
                arguments TEXT NOT NULL,
                status TEXT NOT NULL,
                code_version TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION,
                tokens BIGINT NOT NULL DEFAULT 0,
                error TEXT
            )""",
            "CREATE INDEX runs_by_created ON {s}.runs (created_at DESC, run_id DESC)",
            """CREATE TABLE {s}.blobs (
                hash TEXT PRIMARY KEY,
                data TEXT NOT NULL
            )""",
            """CREATE TABLE {s}.intents (
                run_id TEXT NOT NULL,
                key TEXT NOT NULL,
                tool TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                arguments TEXT,
                arguments_hash TEXT,
                PRIMARY KEY (run_id, key)
            )""",
            """CREATE TABLE {s}.results (
                run_id TEXT NOT NULL,
                key TEXT NOT NULL,
                ok BOOLEAN NOT NULL,
                value TEXT,
                value_hash TEXT,
                error TEXT,
                started_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION NOT NULL,
                tokens BIGINT NOT NULL,
                extra TEXT NOT NULL,
                PRIMARY KEY (run_id, key)
            )""",
        ),
    ),
    Migration(
        "002_leases",
        (
            # See the SQLite migration of the same name.
            """CREATE TABLE {s}.leases (
                run_id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                host TEXT NOT NULL,
                pid INTEGER NOT NULL,
                epoch BIGINT NOT NULL,
                ttl DOUBLE PRECISION NOT NULL,
                acquired_at DOUBLE PRECISION NOT NULL,
                heartbeat_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        "003_rows",
        (
            # See the SQLite migration of the same name.
            "ALTER TABLE {s}.intents ADD COLUMN row_key TEXT",
            (
                "CREATE INDEX intents_by_row ON {s}.intents (run_id, row_key) "
                "WHERE row_key IS NOT NULL"
            ),
            """CREATE TABLE {s}.rows (
                run_id TEXT NOT NULL,
                row_key TEXT NOT NULL,
                ordinal BIGINT NOT NULL,
                status TEXT NOT NULL,
                value TEXT,
                value_hash TEXT,
                error TEXT,
                tokens BIGINT NOT NULL,
                finished_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (run_id, row_key)
            )""",
            "CREATE INDEX rows_by_ordinal ON {s}.rows (run_id, ordinal)",
            "CREATE INDEX rows_by_status ON {s}.rows (run_id, status, ordinal)",
        ),
    ),
)
