"""A journal written by plait before migration 003 (schema 001 + 002 only) opens
under this plait: 003_rows is applied once, and its old runs still load, and
resume through the engine without calling a finished tool again.

The SQLite journal is a committed fixture made by the old plait
(`make_old_journal.py`); the PostgreSQL one is built from it: the 001 + 002
schema (never edited, so it is the old one), then the fixture's tables copied in.
A SQLite journal with the 001-003 schema and a dataset job in it, built from those
migrations, is moved to the calls-by-row tables of 004 and reads the same.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from plait.journal import Journal, RowRecord, open_journal
from plait.journal._migrations import MIGRATIONS_TABLE, POSTGRES_MIGRATIONS
from tests._support import with_schema

from . import _old_tools

pytestmark = pytest.mark.timeout(60)

FIXTURE = Path(__file__).with_name("fixtures") / "journal_001_002.db"
OLD_TABLES = ("runs", "blobs", "intents", "results", "leases")


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    _old_tools.CALLS.clear()
    _old_tools.FAIL.clear()
    yield
    _old_tools.FAIL.clear()


def _old_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, path)  # the committed file stays as the old plait left it
    return str(path)


def _old_postgres(dsn: str, schema: str) -> str:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".{MIGRATIONS_TABLE} '
            "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for migration in POSTGRES_MIGRATIONS[:2]:
            assert migration.name in ("001_initial", "002_leases")
            for statement in migration.statements:
                conn.execute(statement.replace("{s}", f'"{schema}"'))
        with sqlite3.connect(FIXTURE) as old:
            for table in (MIGRATIONS_TABLE, *OLD_TABLES):
                rows = old.execute(f"SELECT * FROM {table}").fetchall()
                if table == "results":  # SQLite keeps booleans as 0/1
                    rows = [(*r[:2], bool(r[2]), *r[3:]) for r in rows]
                if rows:
                    marks = ", ".join(["%s"] * len(rows[0]))
                    with conn.cursor() as cur:
                        cur.executemany(
                            f'INSERT INTO "{schema}".{table} VALUES ({marks})', rows
                        )
    return with_schema(dsn, schema)


@pytest.fixture(params=["sqlite", "postgres"])
def old_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return _old_sqlite(tmp_path)
    return _old_postgres(
        request.getfixturevalue("postgres_dsn"), request.getfixturevalue("pg_schema")
    )


def _fixture_counts() -> dict[str, int]:
    with sqlite3.connect(FIXTURE) as old:
        names = [r[0] for r in old.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")]
        assert names == ["001_initial", "002_leases"]  # the fixture is the old schema
        return {t: old.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in OLD_TABLES}


def _upgraded(spec: str) -> list[str]:
    names = ["001_initial", "002_leases", "003_rows"]
    if spec.endswith(".db"):
        names.append("004_calls_by_row")  # SQLite only: calls clustered by row
    return names


def test_an_old_journal_is_migrated_and_its_runs_resume(old_spec: str) -> None:
    counts = _fixture_counts()
    journal: Journal = open_journal(old_spec)
    try:
        assert journal.applied_migrations() == _upgraded(old_spec)
        runs = {r.run_id: r for r in journal.list_runs()}
        assert {k: r.status for k, r in runs.items()} == {"done": "done", "half": "failed"}
        done = journal.load("done")
        assert len(done.intents) == len(done.results) == 3
        assert all(i.row_key == "" for i in done.intents.values())
        assert sorted(r.value for r in done.results.values()) == [
            "A B", "A" + "!" * 300, "B" + "!" * 300]  # blobs too
        half = journal.load("half")
        failed = [r for r in half.results.values() if not r.ok]
        assert [r.error for r in failed] == ["RuntimeError: cannot shout c"]
        assert half.in_doubt == []
        # The old runs have no rows; the journal takes rows now.
        assert journal.row_status("half", ["a", "b"]) == {}
        assert journal.count_rows("done") == {"done": 0, "dropped": 0, "failed": 0}
    finally:
        journal.close()

    # Resumed by this plait: a and b replayed from the old journal, c run again.
    result = plait.run(_old_tools.greet, ["a", "b", "c"], journal=old_spec, run_id="half")
    assert result.value == "A B C"
    assert result.replayed == 2
    assert _old_tools.CALLS == {"shout": 1, "join": 1}
    again = plait.run(_old_tools.greet, ["a", "b"], journal=old_spec, run_id="done")
    assert again.value == "A B" and again.replayed == 3
    assert _old_tools.CALLS == {"shout": 1, "join": 1}

    journal = open_journal(old_spec)
    try:
        assert journal.get_run("half").status == "done"
        resumed = journal.load("half").results
        assert counts["results"] == 6  # 3 of "done", a, b and the failed c of "half"
        assert sorted((r.tool, r.ok) for r in resumed.values()) == [
            ("join", True), ("shout", True), ("shout", True), ("shout", True)]
        journal.write(rows=[RowRecord("half", "row-1", 0, "done", 1)])
        assert journal.row_status("half", ["row-1"]) == {"row-1": "done"}
        assert journal.applied_migrations() == _upgraded(old_spec)
    finally:
        journal.close()


def _journal_003(path: Path) -> None:
    """A SQLite journal as plait left it before 004_calls_by_row: the 001-003 schema,
    a dataset job's calls keyed by (run_id, key), one plain call, one blob."""
    from plait.journal._migrations import SQLITE_MIGRATIONS

    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, "
                     "applied_at REAL NOT NULL)")
        for migration in SQLITE_MIGRATIONS[:3]:
            assert migration.name in ("001_initial", "002_leases", "003_rows")
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, 1.0)", (migration.name,))
        conn.execute("INSERT INTO runs VALUES ('job', 'map:job', '{}', 'failed', 'v1', 1.0, "
                     "2.0, 2.0, 0, 'killed')")
        big = '"' + "x" * 300 + '"'
        conn.execute("INSERT INTO blobs VALUES ('h1', ?)", (big,))
        intents = [  # (key, row_key, arguments, arguments_hash)
            ("a/0", "a", '{"i":0}', None), ("a/1", "a", None, "h1"),
            ("b/0", "b", '{"i":2}', None), ("b/1", "b", '{"i":3}', None),
            ("plain", None, '{"p":1}', None),
        ]
        conn.executemany("INSERT INTO intents (run_id, key, tool, attempt, started_at, "
                         "arguments, arguments_hash, row_key) VALUES ('job', ?, 't', 1, 1.5, "
                         "?, ?, ?)", [(k, a, h, r) for k, r, a, h in intents])
        conn.executemany(
            "INSERT INTO results VALUES ('job', ?, ?, ?, NULL, ?, 1.5, 1.6, 2, '{}')",
            [("a/0", 1, '"A0"', None), ("a/1", 1, '"A1"', None),
             ("b/0", 0, "null", "RuntimeError: b0"), ("plain", 1, '"P"', None)])
        conn.execute("INSERT INTO rows VALUES ('job', 'a', 0, 'done', '\"A\"', NULL, NULL, 4, "
                     "1.7)")


def test_a_003_journal_keeps_its_rows_clustered_by_row(tmp_path: Path) -> None:
    """004_calls_by_row (SQLite) moves a dataset job's calls to tables keyed by row:
    every call, result, row look-up and check reads the same as before the move, and
    the job resumes on it: a failed call runs again, a finished one is refused."""
    from plait.journal import Intent, JournalOrderError, Result

    old = tmp_path / "old.db"
    _journal_003(old)
    fresh = open_journal(str(tmp_path / "fresh.db"))
    journal = open_journal(str(old))
    try:
        assert journal.applied_migrations() == _upgraded(str(old))
        schema = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
        with journal._use("read") as a, fresh._use("read") as b:  # type: ignore[attr-defined]
            assert a.execute(schema).fetchall() == b.execute(schema).fetchall()
        state = journal.load("job")
        assert {k: i.row_key for k, i in state.intents.items()} == {
            "a/0": "a", "a/1": "a", "b/0": "b", "b/1": "b", "plain": ""}
        assert state.intents["a/1"].arguments == "x" * 300  # through its blob
        assert {k: (r.ok, r.row_key) for k, r in state.results.items()} == {
            "a/0": (True, "a"), "a/1": (True, "a"), "b/0": (False, "b"), "plain": (True, "")}
        intents, results = journal.load_row("job", "b")
        assert sorted(intents) == ["b/0", "b/1"] and list(results) == ["b/0"]
        assert results["b/0"].error == "RuntimeError: b0"
        assert journal.row_status("job", ["a", "b", "c"]) == {"a": "done", "b": "started"}

        journal.update_run("job", status="running")
        with pytest.raises(JournalOrderError, match="already has a result"):
            journal.write([Intent("job", "a/0", "t", {"i": 0}, row_key="a")])
        # The failed call runs again: its failed result gives way to the new intent.
        journal.write([Intent("job", "b/0", "t", {"i": 2}, attempt=2, row_key="b")])
        assert journal.load_row("job", "b")[1] == {}
        with pytest.raises(JournalOrderError, match=r"in doubt|intent without result: b/0, b/1"):
            journal.update_run("job", status="done")
        journal.write([], [Result("job", "b/0", True, "B0"), Result("job", "b/1", True, "B1")],
                      [RowRecord("job", "b", 1, "done", "B")])
        assert journal.load_row("job", "b")[1]["b/1"].row_key == "b"
        assert journal.update_run("job", status="done").status == "done"
    finally:
        journal.close()
        fresh.close()
