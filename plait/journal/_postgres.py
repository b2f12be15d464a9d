"""A journal in PostgreSQL (psycopg 3 and psycopg_pool, extra ``plait[postgres]``).

Tables live in one schema (default ``plait``), created by the migrations in
`_migrations`. Choose another with ``?schema=NAME`` in the URL or ``schema=``.
A commit returns after the server has flushed its WAL (the server's default
``synchronous_commit=on``), so a committed write survives a crash of either side.

Connections come from a bounded pool shared by every journal of the same DSN and
schema in the process (`_pgpool`); each call takes one for its own use, so a
journal is thread-safe without a lock. A lost connection (the backend was
terminated, the server restarted) raises `JournalTransientError` and is
discarded; a read is tried once more at once on a fresh connection, a write is
not (the `JournalWriter` decides). Messages name the server as
``postgresql://user@host:port/db`` and never include a password.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from plait.journal._batch import (
    ROW_UPSERT,
    check_no_result,
    check_results,
    check_runs,
    prepare_batch,
)
from plait.journal._migrations import (
    MIGRATIONS_TABLE,
    POSTGRES_MIGRATIONS,
    check_read_only,
    not_a_journal,
    pending,
)
from plait.journal._pgpool import PoolKey, SharedPool, acquire, pool_options, release
from plait.journal._protocol import (
    HOST,
    INTENT_COLUMNS,
    LEASE_COLUMNS,
    RESULT_COLUMNS,
    Intent,
    JournalError,
    JournalOrderError,
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

__all__ = ["PostgresJournal"]

DEFAULT_SCHEMA = "plait"
DEFAULT_CONNECT_TIMEOUT = 5  # seconds; libpq's minimum is 2
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_RUN_COLUMNS = (
    "run_id, entry, arguments, status, code_version, created_at, updated_at, "
    "finished_at, tokens, error"
)


_T = TypeVar("_T")
# Query parameters of a journal URL that are plait's, not libpq's (which would reject them).
_OWN_PARAMETERS = ("schema", "pool_max", "pool_timeout")


def _import_psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise JournalError(
            f"a PostgreSQL journal needs psycopg 3 and psycopg_pool ({exc.name} is not "
            "installed): pip install 'plait[postgres]'"
        ) from None
    return psycopg


def split_options(dsn: str) -> tuple[str, dict[str, str]]:
    """Take plait's own parameters (``schema``, ``pool_max``, ``pool_timeout``) out of
    a URL's query string; the rest is libpq's."""
    if "://" not in dsn:
        return dsn, {}
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in _OWN_PARAMETERS}
    if not own:
        return dsn, {}
    rest = [(k, v) for k, v in query if k not in _OWN_PARAMETERS]
    return urlunsplit(parts._replace(query=urlencode(rest))), own


def split_schema(dsn: str) -> tuple[str, str | None]:
    """Take ``schema=`` (and plait's other parameters) out of a URL's query string."""
    dsn, own = split_options(dsn)
    return dsn, own.get("schema")


def redact(dsn: str) -> str:
    """A DSN with any password replaced by ``***``."""
    text = re.sub(r"(://[^:/@?#]*):[^@/?#]*@", r"\1:***@", dsn)
    return re.sub(
        r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", r"\1***", text, flags=re.IGNORECASE
    )


def redact_all(value: Any) -> Any:
    """`value` with every string in it redacted (dicts, lists and tuples walked): what
    `plait show`, the timeline and `plait ui` show of journaled data."""
    if isinstance(value, str):
        return redact(value) if "://" in value or "password" in value.lower() else value
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(v) for v in value]
    return value


class PostgresJournal:
    """A journal in schema `schema` of the PostgreSQL database at `dsn`."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_only: bool = False,
    ):
        dsn, own = split_options(dsn)
        # Read-only: every transaction of its connections is read-only (the server
        # refuses a write), and the schema is checked, never created or migrated.
        self.read_only = read_only
        schema = schema or own.pop("schema", None) or DEFAULT_SCHEMA
        self._psycopg = _import_psycopg()
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(dsn)
        except self._psycopg.Error as exc:  # a malformed DSN
            raise JournalError(
                f"invalid PostgreSQL DSN {redact(dsn)}: {redact(self._clean(str(exc), None))}"
            ) from None
        self._password = params.get("password") or None
        host = params.get("host") or params.get("hostaddr") or "localhost"
        port = params.get("port") or "5432"
        user = params.get("user") or ""
        dbname = params.get("dbname") or user
        if not _IDENTIFIER.match(schema):
            raise JournalError(
                f"invalid journal schema name {schema!r}: use letters, digits and _ "
                "(starting with a letter or _)"
            )
        self.schema = schema
        self.location = (
            f"postgresql://{user + '@' if user else ''}{host}:{port}/{dbname} (schema {schema})"
        )
        self._dsn = dsn
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._kwargs["connect_timeout"] = max(2, int(connect_timeout))
        if "application_name" not in params:
            self._kwargs["application_name"] = "plait"
        if read_only:
            self._kwargs["options"] = " ".join(
                filter(None, (params.get("options"), "-c default_transaction_read_only=on")))
        pool_max, pool_timeout = pool_options(own)
        self._lock = threading.Lock()
        self._closed = False
        s = '"' + schema + '"'
        self._sql = {
            "runs": f"{s}.runs",
            "intents": f"{s}.intents",
            "results": f"{s}.results",
            "blobs": f"{s}.blobs",
            "leases": f"{s}.leases",
            "rows": f"{s}.rows",
            "migrations": f"{s}.{MIGRATIONS_TABLE}",
        }
        self._row_sql = _row_queries(self._sql)
        key = PoolKey(dsn, tuple(sorted(self._kwargs.items())), schema, pool_max, pool_timeout)
        # The migrations run once per pool, on a connection of their own: a server
        # that cannot be reached is reported with its own message, within
        # connect_timeout.
        self._pool: SharedPool = acquire(key, self.location, self._clean_text,
                                         lambda: self._connect().close())
        # A journal dropped without close() still gives its use of the pool back.
        self._release = weakref.finalize(self, release, self._pool)

    # --- opening ----------------------------------------------------------------------

    def _clean(self, text: str, password: str | None) -> str:
        """A driver message, first lines only, password removed."""
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        text = " ".join(lines[:3])
        if password:
            text = text.replace(password, "***")
        return text

    def _clean_text(self, text: str) -> str:
        return self._clean(text, self._password)

    def _connect(self) -> Any:
        """A connection of its own (not the pool's), the schema migrated."""
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self._dsn, **self._kwargs)
        except psycopg.Error as exc:
            raise JournalError(
                f"cannot connect to the journal at {self.location}: "
                f"{self._clean(str(exc), self._password)}"
            ) from None
        try:
            self._check_schema(conn) if self.read_only else self._migrate(conn)
        except psycopg.Error as exc:
            conn.close()
            raise JournalError(
                f"cannot prepare the journal at {self.location}: "
                f"{self._clean(str(exc), self._password)}"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self, conn: Any) -> None:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (self.schema,))]
        if tables and MIGRATIONS_TABLE not in tables:
            raise not_a_journal(self.location, tables)
        applied = ([r[0] for r in conn.execute(f"SELECT name FROM {self._sql['migrations']}")]
                   if tables else [])
        check_read_only(applied, POSTGRES_MIGRATIONS, self.location)

    def _migrate(self, conn: Any) -> None:
        lock_id = int.from_bytes(
            hashlib.sha256(f"plait-migrate:{self.schema}".encode()).digest()[:8], "big", signed=True
        )
        with conn.transaction():
            # Two processes opening a new journal at once: one migrates, one waits.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (self.schema,),
                )
            ]
            if tables and MIGRATIONS_TABLE not in tables:
                raise not_a_journal(self.location, tables)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._sql['migrations']} "
                "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            applied = [r[0] for r in conn.execute(f"SELECT name FROM {self._sql['migrations']}")]
            s = '"' + self.schema + '"'
            for migration in pending(applied, POSTGRES_MIGRATIONS, self.location):
                for statement in migration.statements:
                    conn.execute(statement.replace("{s}", s))
                conn.execute(
                    f"INSERT INTO {self._sql['migrations']} (name, applied_at) VALUES (%s, %s)",
                    (migration.name, time.time()),
                )

    def applied_migrations(self) -> list[str]:
        """Names of the schema migrations this journal has, in the order applied."""
        sql = f"SELECT name FROM {self._sql['migrations']} ORDER BY applied_at, name"
        rows = self._read("read migrations", lambda conn: conn.execute(sql).fetchall())
        return [r[0] for r in rows]

    # --- plumbing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _use(self, action: str) -> Iterator[Any]:
        """A pooled connection for one call. An error of the server's operation (a
        lost connection, a connect that fails, a full disk, a serialization
        failure) is a `JournalTransientError`; a lost connection is discarded, and
        the pool's idle ones are tested, so the next call gets a live one."""
        psycopg = self._psycopg
        if self._closed:
            raise JournalError(f"journal {self.location} is closed")
        conn = self._pool.get(action)
        lost = False
        try:
            yield conn
        except psycopg.Error as exc:
            lost = conn.broken or conn.closed
            text = self._clean(str(exc), self._password)
            if isinstance(exc, psycopg.OperationalError):
                raise JournalTransientError(
                    f"cannot {action} in journal {self.location}: "
                    + (f"the connection was lost ({text}); it is replaced on the next call"
                       if lost else text)
                ) from exc
            raise JournalError(f"cannot {action} in journal {self.location}: {text}") from exc
        finally:
            self._pool.put(conn)
            if lost:
                self._pool.purge()

    def _read(self, action: str, read: Callable[[Any], _T]) -> _T:
        """`read(conn)` on a pooled connection. A read is safe to repeat, so one
        that failed on the server's side (a lost connection, most often) is tried
        once more at once, on a fresh connection; a connect that failed is not
        (the wait for it was the bound)."""
        try:
            with self._use(action) as conn:
                return read(conn)
        except JournalTransientError as exc:
            if not isinstance(exc.__cause__, self._psycopg.Error):
                raise
        with self._use(action) as conn:
            return read(conn)

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[Any]:
        with self._use(action) as conn, conn.transaction():
            yield conn

    # --- runs -------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        row = run_row(run)
        with self._transaction("create a run") as conn:
            cur = conn.execute(
                f"INSERT INTO {self._sql['runs']} ({_RUN_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                row,
            )
            if cur.rowcount != 1:
                raise JournalError(f"run {run.run_id!r} already exists in journal {self.location}")

    def get_run(self, run_id: str) -> RunRecord | None:
        sql = f"SELECT {_RUN_COLUMNS} FROM {self._sql['runs']} WHERE run_id = %s"
        row = self._read("read a run", lambda conn: conn.execute(sql, (run_id,)).fetchone())
        return None if row is None else run_from_row(row)

    def list_runs(self, limit: int = 50, status: RunStatus | None = None) -> list[RunRecord]:
        check_status(status)
        where, params = ("WHERE status = %s", (status,)) if status else ("", ())
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM {self._sql['runs']} {where} "
            "ORDER BY created_at DESC, run_id DESC LIMIT %s"
        )
        rows = self._read(
            "list runs", lambda conn: conn.execute(sql, (*params, int(limit))).fetchall()
        )
        return [run_from_row(r) for r in rows]

    def _dangling(self, conn: Any, run_id: str) -> list[str]:
        """Up to six keys of `run_id` with an intent and no result, other than the
        calls of a row that has its record (its outcome settles it).

        Every result has its intent (the write order), so counting tells whether
        any is dangling. Not an anti-join: on tables filled since their last
        ANALYZE the planner picks a nested loop, quadratic in the run's size
        (seconds for 10,000 calls).
        """
        t = self._sql
        count = "SELECT count(*) FROM {} WHERE run_id = %s"
        intents = conn.execute(count.format(t["intents"]), (run_id,)).fetchone()[0]
        results = conn.execute(count.format(t["results"]), (run_id,)).fetchone()[0]
        if intents == results:
            return []
        keys = "SELECT key FROM {} WHERE run_id = %s"
        finished = {r[0] for r in conn.execute(keys.format(t["results"]), (run_id,))}
        started = conn.execute(
            f"SELECT key, row_key FROM {t['intents']} WHERE run_id = %s", (run_id,)
        ).fetchall()
        dangling = [(k, row) for k, row in started if k not in finished]
        rows = sorted({row for _, row in dangling if row})
        settled = set()
        if rows:  # a row with an outcome is settled, whatever its calls left
            settled = {
                r[0]
                for r in conn.execute(
                    f"SELECT row_key FROM {t['rows']} WHERE run_id = %s AND row_key = ANY(%s)",
                    (run_id, rows),
                )
            }
        return sorted(k for k, row in dangling if row not in settled)[:6]

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
        t = self._sql
        with self._transaction("update a run") as conn:
            if lease is not None:
                self._fence(conn, lease)
            # FOR UPDATE waits for writes in flight (they hold FOR SHARE on the run),
            # so "done" is judged against every committed intent.
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM {t['runs']} WHERE run_id = %s FOR UPDATE", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFoundError(run_id, self.location)
            if status == "done":
                refuse_done(run_id, self._dangling(conn, run_id), self.location)
            new = updated_run(run_from_row(row), status, tokens, error, finished_at)
            conn.execute(
                f"UPDATE {t['runs']} SET status = %s, tokens = %s, error = %s, "
                "finished_at = %s, updated_at = %s WHERE run_id = %s",
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
        batch = prepare_batch(intents, results, rows)  # encode outside the lock
        if not batch.run_ids:
            return
        t = self._sql
        with self._transaction("write intents and results") as conn:
            if lease is not None:
                self._fence(conn, lease)
            statuses = dict(
                conn.execute(
                    f"SELECT run_id, status FROM {t['runs']} WHERE run_id = ANY(%s) FOR SHARE",
                    (batch.run_ids,),
                ).fetchall()
            )
            check_runs(batch, statuses, self.location)
            if batch.blobs:
                conn.execute(
                    f"INSERT INTO {t['blobs']} (hash, data) "
                    "SELECT * FROM unnest(%b::text[], %b::text[]) ON CONFLICT DO NOTHING",
                    (list(batch.blobs), list(batch.blobs.values())),
                )
            if batch.intent_rows:
                runs, keys = _columns(batch.intent_keys, 2)
                check_no_result(
                    conn.execute(
                        f"SELECT r.run_id, r.key FROM {t['results']} r JOIN "
                        "unnest(%b::text[], %b::text[]) AS p(run_id, key) "
                        "ON r.run_id = p.run_id AND r.key = p.key WHERE r.ok",
                        (runs, keys),
                    ).fetchall(),
                    self.location,
                )
                # A call that failed may run again (a resumed run retries it): its
                # failed result gives way to the new intent.
                conn.execute(
                    f"DELETE FROM {t['results']} r USING "
                    "unnest(%b::text[], %b::text[]) AS p(run_id, key) "
                    "WHERE r.run_id = p.run_id AND r.key = p.key AND NOT r.ok",
                    (runs, keys),
                )
                conn.execute(
                    f"INSERT INTO {t['intents']} (run_id, key, tool, attempt, started_at, "
                    "arguments, arguments_hash, row_key) SELECT * FROM unnest(%b::text[], "
                    "%b::text[], %b::text[], %b::int[], %b::float8[], %b::text[], %b::text[], "
                    "%b::text[]) "
                    "ON CONFLICT (run_id, key) DO UPDATE SET tool = excluded.tool, "
                    "attempt = excluded.attempt, started_at = excluded.started_at, "
                    "arguments = excluded.arguments, arguments_hash = excluded.arguments_hash, "
                    "row_key = excluded.row_key",
                    _columns(batch.intent_rows, 8),
                )
            if batch.result_rows:
                runs, keys = _columns(batch.result_keys, 2)
                pairs = (runs, keys)
                started = {
                    (r[0], r[1]): r[2]
                    for r in conn.execute(
                        f"SELECT i.run_id, i.key, i.row_key FROM {t['intents']} i JOIN "
                        "unnest(%b::text[], %b::text[]) AS p(run_id, key) "
                        "ON i.run_id = p.run_id AND i.key = p.key",
                        pairs,
                    )
                }
                finished = {
                    (r[0], r[1])
                    for r in conn.execute(
                        f"SELECT r.run_id, r.key FROM {t['results']} r JOIN "
                        "unnest(%b::text[], %b::text[]) AS p(run_id, key) "
                        "ON r.run_id = p.run_id AND r.key = p.key",
                        pairs,
                    )
                }
                check_results(batch, started, finished, self.location)
                cur = conn.execute(
                    f"INSERT INTO {t['results']} (run_id, key, ok, value, value_hash, error, "
                    "started_at, finished_at, tokens, extra) SELECT * FROM unnest("
                    "%b::text[], %b::text[], %b::bool[], %b::text[], %b::text[], %b::text[], "
                    "%b::float8[], %b::float8[], %b::int8[], %b::text[]) "
                    "ON CONFLICT DO NOTHING",
                    _columns(batch.result_rows, 10),
                )
                if cur.rowcount != len(batch.result_rows):
                    # Another writer stored a result for one of these nodes meanwhile.
                    raise JournalOrderError(
                        f"a result was written twice for a node of run(s) "
                        f"{', '.join(map(repr, sorted(set(runs))))} (journal {self.location})"
                    )
            if batch.row_rows:
                # After the results: a row's outcome commits with (never before) them.
                conn.execute(
                    f"INSERT INTO {t['rows']} (run_id, row_key, ordinal, status, value, "
                    "value_hash, error, tokens, finished_at) SELECT * FROM unnest("
                    "%b::text[], %b::text[], %b::int8[], %b::text[], %b::text[], %b::text[], "
                    f"%b::text[], %b::int8[], %b::float8[]) {ROW_UPSERT}",
                    _columns(batch.row_rows, 9),
                )

    # --- leases ----------------------------------------------------------------------
    # Times are the server's clock (clock_timestamp()), so owners on hosts whose
    # clocks disagree still judge a heartbeat's age alike. Locks are taken lease
    # row first, then the run's row, in every transaction: no deadlock cycle.

    def _stored_lease(self, conn: Any, run_id: str, lock: str) -> tuple[Lease | None, float]:
        row = conn.execute(
            f"SELECT {LEASE_COLUMNS}, extract(epoch FROM clock_timestamp())::float8 "
            f"FROM {self._sql['leases']} WHERE run_id = %s {lock}",
            (run_id,),
        ).fetchone()
        if row is None:
            return None, 0.0
        return lease_from_row(row[:8], row[8]), row[8]

    def _fence(self, conn: Any, lease: Lease) -> None:
        # FOR SHARE: a takeover (UPDATE) waits until this write commits, so no write
        # under the old epoch commits after the new owner has the run.
        stored, _ = self._stored_lease(conn, lease.run_id, "FOR SHARE")
        check_lease(lease, stored, self.location)

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
        table = self._sql["leases"]
        with self._transaction("take the run's lease") as conn:
            # A first lease: INSERT .. ON CONFLICT settles a race of two fresh starts
            # (the loser's insert waits for the winner's commit, then does nothing).
            now = conn.execute(
                f"INSERT INTO {table} ({LEASE_COLUMNS}) SELECT %s, %s, %s, %s, 1, %s, t, t "
                "FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS t) c "
                "ON CONFLICT (run_id) DO NOTHING RETURNING heartbeat_at",
                (run_id, owner, host, pid, ttl),
            ).fetchone()
            if now is not None:
                return Lease(run_id, owner, host, pid, 1, ttl, now[0], now[0])
            stored, t = self._stored_lease(conn, run_id, "FOR UPDATE")
            if stored is None:  # released rows stay; a row cannot vanish
                raise JournalError(f"the lease of run {run_id!r} vanished in {self.location}")
            epoch = next_epoch(stored, owner, self.location)
            conn.execute(
                f"UPDATE {table} SET owner = %s, host = %s, pid = %s, epoch = %s, ttl = %s, "
                "acquired_at = %s, heartbeat_at = %s WHERE run_id = %s",
                (owner, host, pid, epoch, ttl, t, t, run_id),
            )
        return Lease(run_id, owner, host, pid, epoch, ttl, t, t)

    def get_lease(self, run_id: str) -> Lease | None:
        with self._use("read a lease") as conn:
            lease, _ = self._stored_lease(conn, run_id, "")
        return lease if lease is not None and lease.owner else None

    def heartbeat(self, lease: Lease) -> Lease:
        with self._transaction("heartbeat the run's lease") as conn:
            stored, t = self._stored_lease(conn, lease.run_id, "FOR UPDATE")
            check_lease(lease, stored, self.location)
            conn.execute(
                f"UPDATE {self._sql['leases']} SET heartbeat_at = %s WHERE run_id = %s",
                (t, lease.run_id),
            )
        return replace(lease, heartbeat_at=t, age=0.0)

    def release(self, lease: Lease) -> bool:
        with self._transaction("release the run's lease") as conn:
            cur = conn.execute(
                f"UPDATE {self._sql['leases']} SET owner = '' "
                "WHERE run_id = %s AND owner = %s AND epoch = %s",
                (lease.run_id, lease.owner, lease.epoch),
            )
            return cur.rowcount == 1

    # --- reading a run ----------------------------------------------------------------

    def load(self, run_id: str) -> JournalState:
        t = self._sql

        def read(conn: Any) -> tuple[Any, list[Any], list[Any]]:
            # One REPEATABLE READ transaction: the three reads see one snapshot.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                row = conn.execute(
                    f"SELECT {_RUN_COLUMNS} FROM {t['runs']} WHERE run_id = %s", (run_id,)
                ).fetchone()
                if row is None:
                    raise RunNotFoundError(run_id, self.location)
                intent_rows = conn.execute(
                    f"SELECT {INTENT_COLUMNS} FROM {t['intents']} i "
                    f"LEFT JOIN {t['blobs']} b ON b.hash = i.arguments_hash WHERE i.run_id = %s",
                    (run_id,),
                ).fetchall()
                result_rows = conn.execute(
                    f"SELECT {RESULT_COLUMNS} FROM {t['results']} r "
                    f"LEFT JOIN {t['blobs']} b ON b.hash = r.value_hash WHERE r.run_id = %s",
                    (run_id,),
                ).fetchall()
            finally:
                if not conn.broken:
                    conn.execute("ROLLBACK")
            return row, intent_rows, result_rows

        row, intent_rows, result_rows = self._read("load a run", read)
        return build_state(run_from_row(row), intent_rows, result_rows, self.location)

    # --- rows of dataset jobs (the look-ups: `_row_queries`) ---------------------------

    def row_status(self, run_id: str, row_keys: Sequence[str]) -> dict[str, str]:
        keys = row_keys_list(row_keys)
        if not keys:
            return {}
        sql = self._row_sql["status"]
        found = self._read(
            "read the status of rows",
            lambda conn: conn.execute(sql, {"keys": keys, "run": run_id}).fetchall(),
        )
        return {k: status for k, status in found if status is not None}

    def load_row(
        self, run_id: str, row_key: str
    ) -> tuple[dict[str, Intent], dict[str, Result]]:
        sql = self._row_sql

        def read(conn: Any) -> tuple[list[Any], list[Any]]:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                intent_rows = conn.execute(sql["intents"], (run_id, row_key)).fetchall()
                result_rows = conn.execute(sql["results"], (run_id, row_key)).fetchall()
            finally:
                if not conn.broken:
                    conn.execute("ROLLBACK")
            return intent_rows, result_rows

        intent_rows, result_rows = self._read("load a row", read)
        return build_calls(run_id, intent_rows, result_rows, self.location)

    def iter_rows(
        self, run_id: str, *, status: RowStatus | None = None, after: int = -1, limit: int = 1000
    ) -> list[RowRecord]:
        check_row_status(status)
        after, limit = check_page(after, limit)
        sql = self._row_sql["page_status" if status else "page"]
        params = (run_id, *((status,) if status else ()), after, limit)

        def read(conn: Any) -> list[Any]:
            with conn.transaction():
                # The index yields the rows in ordinal order, so a sort is never
                # needed; without statistics (a table filled since its last
                # ANALYZE) the planner would take the run for a handful of rows
                # and sort all of it for the first page. Forbid it.
                conn.execute("SET LOCAL enable_sort = off")
                return conn.execute(sql, params).fetchall()

        found = self._read("read rows", read)
        return [row_from_db(run_id, r, self.location) for r in found]

    def count_rows(self, run_id: str) -> dict[str, int]:
        sql = f"SELECT status, count(*) FROM {self._sql['rows']} WHERE run_id = %s GROUP BY status"
        found = self._read("count rows", lambda conn: conn.execute(sql, (run_id,)).fetchall())
        return row_counts(found)

    def get_blob(self, hash: str) -> bytes:
        sql = f"SELECT data FROM {self._sql['blobs']} WHERE hash = %s"
        row = self._read("read a blob", lambda conn: conn.execute(sql, (hash,)).fetchone())
        if row is None:
            raise JournalError(f"no blob {hash} in journal {self.location}")
        return row[0].encode("ascii")

    # --- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._release()  # once: the last journal of the pool closes it

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresJournal({self.location!r})"


def _row_queries(t: dict[str, str]) -> dict[str, str]:
    """The per-row look-ups. LATERAL subqueries with LIMIT 1 are never turned into
    a hash join over the whole run, whatever the table statistics say: each key
    costs index probes only."""
    return {
        # The intents are probed only for keys without a row record (the condition
        # on r.status is a one-time filter of that subquery).
        "status": (
            "SELECT k.row_key, coalesce(r.status, i.status) "
            "FROM unnest(%(keys)s::text[]) AS k(row_key) "
            f"LEFT JOIN LATERAL (SELECT status FROM {t['rows']} "
            "WHERE run_id = %(run)s AND row_key = k.row_key LIMIT 1) r ON true "
            f"LEFT JOIN LATERAL (SELECT 'started'::text AS status FROM {t['intents']} "
            "WHERE r.status IS NULL AND run_id = %(run)s AND row_key = k.row_key LIMIT 1) i "
            "ON true"
        ),
        "intents": (
            f"SELECT {INTENT_COLUMNS} FROM {t['intents']} i "
            f"LEFT JOIN {t['blobs']} b ON b.hash = i.arguments_hash "
            "WHERE i.run_id = %s AND i.row_key = %s"
        ),
        # Results through their intents' row index, one key probe each.
        "results": (
            f"SELECT {RESULT_COLUMNS} FROM {t['intents']} i "
            f"CROSS JOIN LATERAL (SELECT * FROM {t['results']} "
            "WHERE run_id = i.run_id AND key = i.key LIMIT 1) r "
            f"LEFT JOIN {t['blobs']} b ON b.hash = r.value_hash "
            "WHERE i.run_id = %s AND i.row_key = %s"
        ),
        # A page of row records: chosen on the rows table alone, then their values.
        # With sorting disabled (see iter_rows), only an index that yields rows in
        # ordinal order can serve it: (run_id, ordinal) or (run_id, status, ordinal).
        "page": _page(t, ""),
        "page_status": _page(t, "AND status = %s "),
    }


def _page(t: dict[str, str], where: str) -> str:
    return (
        f"SELECT {ROW_COLUMNS} FROM (SELECT * FROM {t['rows']} "
        f"WHERE run_id = %s {where}AND ordinal > %s ORDER BY ordinal LIMIT %s) r "
        f"LEFT JOIN {t['blobs']} b ON b.hash = r.value_hash ORDER BY r.ordinal"
    )


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to columns, for unnest(). Arrays go as binary parameters (%b): psycopg
    quotes every element of a text-format array with regular expressions, which
    cost the writer five times the CPU of the binary form. Each column must hold
    one Python type (floats as float), as `prepare_batch` makes them."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]
