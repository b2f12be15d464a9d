"""The default journal: one SQLite file.

Durability: the file is in WAL mode with ``synchronous=NORMAL``. A transaction is
committed once its WAL frames are written to the OS, so a committed write
survives the process being killed at any instant (kill -9, a crash, an OOM kill),
which is what plait promises. What NORMAL gives up against FULL is an fsync per
commit: after a power loss or an OS crash the last few transactions may be lost
(never corrupted: the WAL is checksummed and rolled back to the last good frame).
Those calls then show as "in doubt" or not started at all on resume.

Threads: one connection, opened with ``check_same_thread=False`` and guarded by a
lock, so a journal can be handed to a writer thread. Other processes may use the
same file at the same time: writes take the write lock up front
(``BEGIN IMMEDIATE``) and wait up to `timeout` seconds for it.

Failures that may clear by themselves (the lock still held after `timeout`, a
full disk, an I/O error) raise `JournalTransientError`, which the journal writer
retries within its own bound; so `timeout` is short (2 s): a run whose journal
stays locked ends within `timeout` + the writer's bound of the lock being taken.
A read-only or corrupt file raises a plain `JournalError`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Self

from plait.journal._batch import (
    ROW_UPSERT,
    check_no_result,
    check_results,
    check_runs,
    prepare_batch,
)
from plait.journal._migrations import (
    MIGRATIONS_TABLE,
    SQLITE_MIGRATIONS,
    check_read_only,
    not_a_journal,
    pending,
)
from plait.journal._protocol import (
    HOST,
    INTENT_COLUMNS,
    LEASE_COLUMNS,
    RESULT_COLUMNS,
    Intent,
    JournalError,
    JournalState,
    JournalTransientError,
    Lease,
    Result,
    RowRecord,
    RowStatus,
    RunNotFoundError,
    RunRecord,
    RunStatus,
    build_calls,
    build_state,
    check_lease,
    check_status,
    check_ttl,
    lease_from_row,
    new_owner,
    next_epoch,
    refuse_done,
    run_from_row,
    run_row,
    updated_run,
)
from plait.journal._rows import (
    ROW_COLUMNS,
    check_page,
    check_row_status,
    row_counts,
    row_from_db,
    row_keys_list,
)

__all__ = ["SQLiteJournal"]

DEFAULT_TIMEOUT = 2.0  # seconds to wait for another process's write lock (see above)
# Node keys are content hashes, so each call's entry in the (run_id, key) index
# lands on a random page (calls themselves are clustered by row, migration 004):
# once the file outgrows SQLite's default 2 MB page cache, such an insert reads its
# page back from the OS, and each commit's dirty pages are written to the WAL and
# again, a checkpoint later, to the file. A 64 MB cache (allocated as used) keeps
# those pages in memory for a job of 100k rows, and a checkpoint every 10,000 WAL
# pages (about 40 MB) writes a page dirtied by many commits once instead of once
# per 1,000 pages. Durability is unchanged: a commit is in the WAL, whenever the
# checkpoint comes.
_WRITER_PRAGMAS = ("PRAGMA cache_size=-65536", "PRAGMA wal_autocheckpoint=10000")
_RUN_COLUMNS = (
    "run_id, entry, arguments, status, code_version, created_at, updated_at, "
    "finished_at, tokens, error"
)


class SQLiteJournal:
    """A journal in one SQLite file (created with its directory's permissions)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float | None = None,
                 read_only: bool = False):
        text = os.fspath(path)
        # Read-only: opened by SQLite as such (mode=ro, query_only), never created
        # or migrated; any write raises. A live run's writer is not blocked by it.
        self.read_only = read_only
        if text == ":memory:":
            self.path: Path | None = None
            self.location = ":memory:"
        else:
            self.path = Path(text).expanduser().absolute()
            self.location = str(self.path)
        self._timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn = self._connect()

    # --- opening ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        where = self.location
        if self.path is not None:
            parent = self.path.parent
            if not parent.is_dir():
                raise JournalError(
                    f"cannot open journal {where}: directory {parent} does not exist"
                )
            if self.path.is_dir():
                raise JournalError(f"cannot open journal {where}: it is a directory")
        conn = None
        try:
            if self.read_only:
                if self.path is None or not self.path.is_file():
                    raise JournalError(f"cannot open journal {where} read-only: no such file")
                return self._connect_read_only()
            conn = sqlite3.connect(
                ":memory:" if self.path is None else str(self.path),
                timeout=self._timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
            )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() not in ("wal", "memory"):
                raise JournalError(
                    f"cannot open journal {where}: the file system does not support "
                    f"SQLite's WAL mode (got {mode!r})"
                )
            conn.execute("PRAGMA synchronous=NORMAL")  # see the module docstring
            for pragma in _WRITER_PRAGMAS:
                conn.execute(pragma)
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            self._migrate(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise _error(exc)(f"cannot open journal {where}: {_explain(exc)}") from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        assert self.path is not None
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only=1")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")]
            if tables and MIGRATIONS_TABLE not in tables:
                raise not_a_journal(self.location, tables)
            applied = ([r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")]
                       if tables else [])
            check_read_only(applied, SQLITE_MIGRATIONS, self.location)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' "
                    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                )
            ]
            if tables and MIGRATIONS_TABLE not in tables:
                raise not_a_journal(self.location, tables)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            try:
                applied = [r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")]
            except sqlite3.OperationalError:
                raise JournalError(
                    f"{self.location} is not a plait journal: its {MIGRATIONS_TABLE} table "
                    "has an unexpected shape"
                ) from None
            for migration in pending(applied, SQLITE_MIGRATIONS, self.location):
                for statement in migration.statements:
                    try:
                        conn.execute(statement)
                    except sqlite3.OperationalError as exc:
                        raise JournalError(
                            f"{self.location} is not a plait journal with a compatible "
                            f"schema: migration {migration.name} failed: {exc}"
                        ) from None
                conn.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                    (migration.name, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def applied_migrations(self) -> list[str]:
        """Names of the schema migrations this journal has, in the order applied."""
        with self._use("read migrations") as conn:
            rows = conn.execute(
                f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY applied_at, name"
            ).fetchall()
        return [r[0] for r in rows]

    # --- plumbing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _use(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise JournalError(f"journal {self.location} is closed")
            try:
                yield conn
            except sqlite3.Error as exc:
                raise _error(exc)(
                    f"cannot {action} in journal {self.location}: {_explain(exc)}"
                ) from exc

    @contextlib.contextmanager
    def _transaction(self, action: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._use(action) as conn:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                # A COMMIT that fails (busy, disk full) may leave the transaction open:
                # roll it back below, or the next BEGIN fails on this connection.
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # keep the first error
                        conn.execute("ROLLBACK")
                raise

    # --- runs -------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        row = run_row(run)
        with self._transaction("create run") as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)).fetchone():
                raise JournalError(f"run {run.run_id!r} already exists in journal {self.location}")
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._use("read a run") as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else run_from_row(row)

    def list_runs(self, limit: int = 50, status: RunStatus | None = None) -> list[RunRecord]:
        check_status(status)
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._use("list runs") as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs {where} "
                "ORDER BY created_at DESC, run_id DESC LIMIT ?",
                (*params, int(limit)),
            ).fetchall()
        return [run_from_row(r) for r in rows]

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = None,
        tokens: int | None = None,
        error: str | None = None,
        finished_at: float | None = None,
        lease: Lease | None = None,
    ) -> RunRecord:
        check_status(status)
        with self._transaction("update a run") as conn:
            if lease is not None:
                self._fence(conn, lease)
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFoundError(run_id, self.location)
            if status == "done":
                dangling = [r[0] for r in conn.execute(_DANGLING, (run_id,))]
                refuse_done(run_id, dangling, self.location)
            new = updated_run(run_from_row(row), status, tokens, error, finished_at)
            conn.execute(
                "UPDATE runs SET status = ?, tokens = ?, error = ?, finished_at = ?, "
                "updated_at = ? WHERE run_id = ?",
                (new.status, new.tokens, new.error, new.finished_at, new.updated_at, run_id),
            )
        return new

    # --- intents and results ----------------------------------------------------------

    def write(
        self,
        intents: Sequence[Intent] = (),
        results: Sequence[Result] = (),
        rows: Sequence[RowRecord] = (),
        *,
        lease: Lease | None = None,
    ) -> None:
        batch = prepare_batch(intents, results, rows, null="")  # encode outside the lock
        if not batch.run_ids:
            return
        with self._transaction("write intents and results") as conn:
            if lease is not None:
                self._fence(conn, lease)
            statuses = {}
            for run_id in batch.run_ids:
                row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is not None:
                    statuses[run_id] = row[0]
            check_runs(batch, statuses, self.location)
            if batch.blobs:
                conn.executemany(
                    "INSERT INTO blobs (hash, data) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    batch.blobs.items(),
                )
            if batch.intent_rows and not _insert_new(conn, batch.intent_rows):
                # Some of these calls were started before (a retry, a resumed run).
                # One query per run for the whole batch (not one per intent): which of
                # them already have a result.
                done: list[tuple[str, str]] = []
                failed: list[tuple[str, str, str]] = []
                for run_id, keys in _by_run(batch.intent_keys):
                    # A result is stored under its intent's row key.
                    for key, row_key, ok in conn.execute(_STARTED_RESULTS, (run_id, keys)):
                        if ok:
                            done.append((run_id, key))
                        else:
                            failed.append((run_id, row_key, key))
                check_no_result(done, self.location)
                # A call that failed may run again (a resumed run retries it): its
                # failed result gives way to the new intent.
                if failed:
                    conn.executemany(
                        "DELETE FROM results WHERE run_id = ? AND row_key = ? AND key = ?", failed
                    )
                conn.executemany(_UPSERT_INTENT, batch.intent_rows)
            if batch.result_rows:
                started: dict[tuple[str, str], str] = {}
                finished: set[tuple[str, str]] = set()
                for run_id, keys in _by_run(batch.result_keys):
                    # The intent's row key ("" for none), NULL when there is no intent.
                    for key, row_key, has_result in conn.execute(_INTENT_ROWS, (run_id, keys)):
                        if row_key is not None:
                            started[(run_id, key)] = row_key
                        if has_result:
                            finished.add((run_id, key))
                check_results(batch, started, finished, self.location)
                # Each under its intent's row key (the last column).
                conn.executemany(
                    "INSERT INTO results (run_id, key, ok, value, value_hash, error, "
                    "started_at, finished_at, tokens, extra, row_key) "
                    "VALUES (?, ?, ?, nullif(?, ''), nullif(?, ''), ?, ?, ?, ?, ?, ?)",
                    [(*row, started[(row[0], row[1])]) for row in batch.result_rows],
                )
            if batch.row_rows:
                # After the results: a row's outcome commits with (never before) them.
                conn.executemany(
                    "INSERT INTO rows (run_id, row_key, ordinal, status, value, "
                    "value_hash, error, tokens, finished_at) "
                    "VALUES (?, ?, ?, ?, nullif(?, ''), nullif(?, ''), ?, ?, ?) "
                    f"{ROW_UPSERT}",
                    batch.row_rows,
                )

    # --- leases (BEGIN IMMEDIATE: one writer at a time, so check-then-set is atomic) -----

    def _stored_lease(self, conn: sqlite3.Connection, run_id: str) -> Lease | None:
        row = conn.execute(
            f"SELECT {LEASE_COLUMNS} FROM leases WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else lease_from_row(row, time.time())

    def _fence(self, conn: sqlite3.Connection, lease: Lease) -> None:
        check_lease(lease, self._stored_lease(conn, lease.run_id), self.location)

    def acquire(
        self,
        run_id: str,
        *,
        ttl: float,
        owner: str | None = None,
        host: str | None = None,
        pid: int | None = None,
    ) -> Lease:
        ttl = check_ttl(ttl)
        owner = owner or new_owner()
        host = HOST if host is None else host
        pid = os.getpid() if pid is None else int(pid)
        with self._transaction("take the run's lease") as conn:
            epoch = next_epoch(self._stored_lease(conn, run_id), owner, self.location)
            now = time.time()
            lease = Lease(run_id, owner, host, pid, epoch, ttl, now, now)
            conn.execute(
                f"INSERT OR REPLACE INTO leases ({LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, owner, host, pid, epoch, ttl, now, now),
            )
        return lease

    def get_lease(self, run_id: str) -> Lease | None:
        with self._use("read a lease") as conn:
            lease = self._stored_lease(conn, run_id)
        return lease if lease is not None and lease.owner else None

    def heartbeat(self, lease: Lease) -> Lease:
        with self._transaction("heartbeat the run's lease") as conn:
            self._fence(conn, lease)
            now = time.time()
            conn.execute("UPDATE leases SET heartbeat_at = ? WHERE run_id = ?", (now, lease.run_id))
        return replace(lease, heartbeat_at=now, age=0.0)

    def release(self, lease: Lease) -> bool:
        with self._transaction("release the run's lease") as conn:
            cur = conn.execute(
                "UPDATE leases SET owner = '' WHERE run_id = ? AND owner = ? AND epoch = ?",
                (lease.run_id, lease.owner, lease.epoch),
            )
            return cur.rowcount == 1

    # --- reading a run ----------------------------------------------------------------

    def load(self, run_id: str) -> JournalState:
        with self._transaction("load a run", write=False) as conn:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFoundError(run_id, self.location)
            intent_rows = conn.execute(
                f"SELECT {INTENT_COLUMNS} FROM intents i "
                "LEFT JOIN blobs b ON b.hash = i.arguments_hash WHERE i.run_id = ?",
                (run_id,),
            ).fetchall()
            result_rows = conn.execute(
                f"SELECT {RESULT_COLUMNS} FROM results r "
                "LEFT JOIN blobs b ON b.hash = r.value_hash WHERE r.run_id = ?",
                (run_id,),
            ).fetchall()
        return build_state(run_from_row(row), intent_rows, result_rows, self.location)

    # --- rows of dataset jobs (every query below is an index look-up or range) --------

    def row_status(self, run_id: str, row_keys: Sequence[str]) -> dict[str, str]:
        keys = row_keys_list(row_keys)
        if not keys:
            return {}
        # The keys travel as one JSON array (no limit on bound variables). coalesce
        # is lazy: the intents are probed only for keys without a row record.
        with self._use("read the status of rows") as conn:
            found = conn.execute(
                _ROW_STATUS, (run_id, json.dumps(keys, ensure_ascii=False))
            ).fetchall()
        return {k: status for k, status in found if status is not None}

    def load_row(
        self, run_id: str, row_key: str
    ) -> tuple[dict[str, Intent], dict[str, Result]]:
        with self._transaction("load a row", write=False) as conn:
            intent_rows = conn.execute(_ROW_INTENTS, (run_id, row_key)).fetchall()
            result_rows = conn.execute(_ROW_RESULTS, (run_id, row_key)).fetchall()
        return build_calls(run_id, intent_rows, result_rows, self.location)

    def iter_rows(
        self, run_id: str, *, status: RowStatus | None = None, after: int = -1, limit: int = 1000
    ) -> list[RowRecord]:
        check_row_status(status)
        after, limit = check_page(after, limit)
        sql = _PAGE_STATUS if status else _PAGE
        with self._use("read rows") as conn:
            found = conn.execute(sql, (run_id, *((status,) if status else ()), after, limit))
            found = found.fetchall()
        return [row_from_db(run_id, r, self.location) for r in found]

    def count_rows(self, run_id: str) -> dict[str, int]:
        with self._use("count rows") as conn:
            found = conn.execute(
                "SELECT status, count(*) FROM rows WHERE run_id = ? GROUP BY status", (run_id,)
            ).fetchall()
        return row_counts(found)

    def get_blob(self, hash: str) -> bytes:
        with self._use("read a blob") as conn:
            row = conn.execute("SELECT data FROM blobs WHERE hash = ?", (hash,)).fetchone()
        if row is None:
            raise JournalError(f"no blob {hash} in journal {self.location}")
        return row[0].encode("ascii")

    # --- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteJournal({self.location!r})"


# Text columns that may be NULL come as "" (`prepare_batch(null="")`), never empty
# text otherwise (canonical JSON, a hash, a row key). The row key is stored as it
# comes: "" is a plain run's call (it is part of the primary key, never NULL).
_INTENT = (
    "INSERT INTO intents (run_id, key, tool, attempt, started_at, arguments, "
    "arguments_hash, row_key) VALUES (?, ?, ?, ?, ?, nullif(?, ''), nullif(?, ''), ?)"
)
_UPSERT_INTENT = (
    f"{_INTENT} ON CONFLICT (run_id, key) DO UPDATE SET tool = excluded.tool, "
    "attempt = excluded.attempt, started_at = excluded.started_at, "
    "arguments = excluded.arguments, arguments_hash = excluded.arguments_hash, "
    "row_key = excluded.row_key"
)


# Calls started and never settled (no result, and no record of their row), the
# first few by key. The run's intents are read in primary-key order, so the probes
# of results and rows walk their tables in order too; ordered by key, through the
# narrower (run_id, key) index, each probe lands on a random page (3x slower for a
# large job). MATERIALIZED and `row_key >= ''` keep the planner on that path.
_DANGLING = (
    "WITH d AS MATERIALIZED (SELECT i.key FROM intents i "
    "WHERE i.run_id = ?1 AND i.row_key >= '' AND NOT EXISTS (SELECT 1 FROM results r "
    "WHERE r.run_id = i.run_id AND r.row_key = i.row_key AND r.key = i.key) "
    "AND (i.row_key = '' OR NOT EXISTS (SELECT 1 FROM rows w "
    "WHERE w.run_id = i.run_id AND w.row_key = i.row_key))) "
    "SELECT key FROM d ORDER BY key LIMIT 6"
)
# Through the (run_id, key) index to each intent, then its result's primary key.
_STARTED_RESULTS = (
    "SELECT i.key, i.row_key, r.ok FROM json_each(?2) j "
    "CROSS JOIN intents i INDEXED BY intents_by_key CROSS JOIN results r "
    "WHERE i.run_id = ?1 AND i.key = j.value "
    "AND r.run_id = i.run_id AND r.row_key = i.row_key AND r.key = i.key"
)
_INTENT_ROWS = (
    "SELECT j.value, i.row_key, EXISTS (SELECT 1 FROM results r WHERE r.run_id = ?1 "
    "AND r.row_key = i.row_key AND r.key = j.value) "
    "FROM json_each(?2) j LEFT JOIN intents i INDEXED BY intents_by_key "
    "ON i.run_id = ?1 AND i.key = j.value"
)


def _insert_new(conn: sqlite3.Connection, intent_rows: list[tuple]) -> bool:
    """Insert intents for calls never started before, the usual case, and say so; on
    any conflict undo them and say not (the caller then checks each and upserts).

    No intent, no result (a result is refused without its intent), so a batch whose
    intents are all new needs no look-up of the results: the unique (run_id, key)
    index, which the insert probes anyway, answers for them."""
    conn.execute("SAVEPOINT new_intents")
    try:
        conn.executemany(_INTENT, intent_rows)
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK TO new_intents")
        conn.execute("RELEASE new_intents")
        return False
    conn.execute("RELEASE new_intents")
    return True


# One look-up per key: the rows table's primary key, then (only for keys without a
# record) a range of the intents' primary key (run_id, row_key, key). A row's calls
# and their results are ranges of the two tables' primary keys.
_ROW_STATUS = (
    "SELECT k.value, coalesce("
    "(SELECT r.status FROM rows r WHERE r.run_id = ?1 AND r.row_key = k.value), "
    "(SELECT 'started' FROM intents i WHERE i.run_id = ?1 AND i.row_key = k.value LIMIT 1)"
    ") FROM json_each(?2) k"
)
_ROW_INTENTS = (
    f"SELECT {INTENT_COLUMNS} FROM intents i "
    "LEFT JOIN blobs b ON b.hash = i.arguments_hash WHERE i.run_id = ? AND i.row_key = ?"
)
_ROW_RESULTS = (
    f"SELECT {RESULT_COLUMNS} FROM results r "
    "LEFT JOIN blobs b ON b.hash = r.value_hash WHERE r.run_id = ? AND r.row_key = ?"
)

# A page of row records, in the index's order (its primary-key suffix orders ties).
_PAGE = (
    f"SELECT {ROW_COLUMNS} FROM rows r INDEXED BY rows_by_ordinal "
    "LEFT JOIN blobs b ON b.hash = r.value_hash WHERE r.run_id = ? AND r.ordinal > ? "
    "ORDER BY r.ordinal LIMIT ?"
)
_PAGE_STATUS = (
    f"SELECT {ROW_COLUMNS} FROM rows r INDEXED BY rows_by_status "
    "LEFT JOIN blobs b ON b.hash = r.value_hash "
    "WHERE r.run_id = ? AND r.status = ? AND r.ordinal > ? ORDER BY r.ordinal LIMIT ?"
)

# Primary result codes of failures that may clear by themselves.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13
_TRANSIENT_CODES = frozenset({_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL})


def _by_run(pairs: Sequence[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """(run id, JSON array of its keys) for `pairs` sorted by run id: a batch's keys
    go to SQLite as one parameter (json_each), so a check is one query, not one per
    record."""
    for run_id, group in itertools.groupby(pairs, key=operator.itemgetter(0)):
        yield run_id, json.dumps([key for _, key in group])


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # extended code -> primary


def _error(exc: sqlite3.Error) -> type[JournalError]:
    """The class to raise for `exc`: transient when retrying may succeed."""
    code = _code(exc)
    if code is not None:
        return JournalTransientError if code in _TRANSIENT_CODES else JournalError
    low = str(exc).lower()
    if any(w in low for w in ("locked", "busy", "disk is full", "disk i/o error")):
        return JournalTransientError
    return JournalError


def _explain(exc: sqlite3.Error) -> str:
    text = str(exc)
    low = text.lower()
    code = _code(exc)
    if "file is not a database" in low or "malformed" in low:
        return f"the file is not a SQLite database, or it is corrupt ({text})"
    if "unable to open database file" in low:
        return f"the file cannot be created or opened; is its directory writable? ({text})"
    if "readonly" in low or "read-only" in low:
        return f"the file is read-only ({text})"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in low or "busy" in low:
        return f"the database stayed locked by another process ({text})"
    if code == _SQLITE_FULL or "disk is full" in low:
        return f"the disk holding the journal is full ({text})"
    if code == _SQLITE_IOERR or "disk i/o error" in low:
        return f"the disk holding the journal failed to read or write ({text})"
    return text
