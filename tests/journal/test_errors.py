"""Opening journals that cannot be used: each a JournalError that says what and
where, quickly, with no deep traceback."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from plait import PlaitError
from plait.journal import JournalError, PostgresJournal, RunRecord, SQLiteJournal, open_journal
from tests._support import free_port, with_schema


def open_fails(spec: str, *fragments: str, within: float = 3.0) -> JournalError:
    t0 = time.monotonic()
    with pytest.raises(JournalError) as info:
        open_journal(spec)
    elapsed = time.monotonic() - t0
    assert elapsed < within, f"took {elapsed:.1f}s"
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, PlaitError)
    return info.value


# --- SQLite -------------------------------------------------------------------------


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(os.urandom(8192))
    err = open_fails(str(path), str(path), "not a SQLite database, or it is corrupt")
    assert err.__cause__ is None and err.__suppress_context__


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "runs.db"
    open_fails(str(path), str(path), f"directory {path.parent} does not exist")


def test_path_is_a_directory(tmp_path: Path) -> None:
    open_fails(str(tmp_path), str(tmp_path), "is a directory")


def test_unwritable_location(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permissions; /proc refuses new files to everyone.
        target = "/proc/plait-journal-test.db"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "runs.db")
    open_fails(target, target, "cannot")


def test_sqlite_but_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE runs (x)")
    open_fails(str(path), str(path), "not a plait journal", "customers")
    # Left untouched.
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == {"customers", "runs"}


def test_journal_from_a_newer_plait(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteJournal(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _plait_migrations VALUES ('999_future', 0)")
    open_fails(str(path), "newer version of plait", "999_future")


def test_migrations_table_of_another_shape(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE _plait_migrations (id INTEGER)")
    open_fails(str(path), "not a plait journal", "unexpected shape")


def test_sqlite_settings(tmp_path: Path) -> None:
    j = SQLiteJournal(tmp_path / "runs.db")
    try:
        conn = j._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    finally:
        j.close()


# --- choosing by spec ---------------------------------------------------------------


def test_spec_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_journal("runs.db") as j:
        assert isinstance(j, SQLiteJournal) and j.location == str(tmp_path / "runs.db")
    with open_journal(f"sqlite://{tmp_path}/b.sqlite") as j:
        assert isinstance(j, SQLiteJournal) and j.location == str(tmp_path / "b.sqlite")
    with open_journal(tmp_path / "c.db") as j:  # a PathLike
        assert isinstance(j, SQLiteJournal)
    with open_journal(":memory:") as j:
        assert j.list_runs() == []
    assert {p.name for p in tmp_path.iterdir()} >= {"runs.db", "b.sqlite", "c.db"}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("mysql://u:hunter2@db/x", "unknown journal scheme 'mysql'"),
        ("redis://localhost", "unknown journal scheme 'redis'"),
        ("", "empty journal name"),
        ("   ", "empty journal name"),
        ("sqlite://relative.db", "sqlite:///absolute/path.db"),
    ],
)
def test_bad_specs(spec: str, fragment: str) -> None:
    err = open_fails(spec, fragment)
    assert "hunter2" not in str(err)


def test_spec_of_wrong_type() -> None:
    with pytest.raises(JournalError, match="not int"):
        open_journal(5)  # type: ignore[arg-type]


# --- PostgreSQL ---------------------------------------------------------------------


def test_unreachable_postgres() -> None:
    port = free_port()  # nothing listens there
    spec = f"postgresql://plait:s3cret-pw@127.0.0.1:{port}/journal"
    err = open_fails(spec, "cannot connect", f"127.0.0.1:{port}", "plait@", within=8.0)
    assert "s3cret-pw" not in str(err)
    assert err.__cause__ is None


def test_unreachable_postgres_keyword_dsn() -> None:
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(JournalError) as info:
        PostgresJournal(f"host=127.0.0.1 port={port} user=u password=pw123 dbname=d")
    assert time.monotonic() - t0 < 8.0
    assert "pw123" not in str(info.value) and f"127.0.0.1:{port}" in str(info.value)


def test_postgres_unknown_dsn_option() -> None:
    with pytest.raises(JournalError) as info:
        open_journal("postgresql://u:topsecret@127.0.0.1:1/db?bogus_option=1")
    assert "topsecret" not in str(info.value)


def test_postgres_bad_schema_name() -> None:
    with pytest.raises(JournalError, match="invalid journal schema name"):
        open_journal("postgresql://u@127.0.0.1:1/db?schema=drop%20table")


def test_postgres_schema_not_a_journal(postgres_dsn: str, pg_schema: str) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        conn.execute(f'CREATE TABLE "{pg_schema}".invoices (id int)')
    open_fails(with_schema(postgres_dsn, pg_schema), "not a plait journal", "invoices", pg_schema)


def test_postgres_newer_journal(postgres_dsn: str, pg_schema: str) -> None:
    import psycopg

    spec = with_schema(postgres_dsn, pg_schema)
    open_journal(spec).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO \"{pg_schema}\"._plait_migrations VALUES ('999_x', 0)")
    open_fails(spec, "newer version of plait", "999_x")


def test_schema_is_taken_out_of_the_url() -> None:
    from plait.journal._postgres import DEFAULT_SCHEMA, redact, split_schema

    assert DEFAULT_SCHEMA == "plait"
    assert split_schema("postgresql://u@h/db?schema=s1&sslmode=disable") == (
        "postgresql://u@h/db?sslmode=disable",
        "s1",
    )
    assert split_schema("postgresql://u@h/db") == ("postgresql://u@h/db", None)
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact("host=h password=pw user=u") == "host=h password=*** user=u"


def test_postgres_reconnects_after_the_connection_dies(postgres_dsn: str, pg_schema: str) -> None:
    import psycopg

    app = f"plait_reconnect_{pg_schema[-12:]}"
    j = open_journal(with_schema(postgres_dsn, pg_schema) + f"&application_name={app}")
    try:
        j.create_run(RunRecord("r", "e"))
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s", (app,)
            ).fetchone()[0]
        assert killed >= 1
        assert j.get_run("r") is not None  # a read is tried again on a new connection
    finally:
        j.close()


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(JournalError, match=r"pip install 'plait\[postgres\]'"):
        open_journal("postgresql://u@127.0.0.1:1/db")
