"""A journal written by plait before migration 003 (schema 001 + 002 only) opens
under this plait: 003_rows is applied once, and its old runs still load, and
resume through the engine without calling a finished tool again.

The SQLite journal is a committed fixture made by the old plait
(`make_old_journal.py`); the PostgreSQL one is built from it: the 001 + 002
schema (never edited, so it is the old one), then the fixture's tables copied in.
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


def test_an_old_journal_is_migrated_and_its_runs_resume(old_spec: str) -> None:
    counts = _fixture_counts()
    journal: Journal = open_journal(old_spec)
    try:
        assert journal.applied_migrations() == ["001_initial", "002_leases", "003_rows"]
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
        assert journal.applied_migrations() == ["001_initial", "002_leases", "003_rows"]
    finally:
        journal.close()
