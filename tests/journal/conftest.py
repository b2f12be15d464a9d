"""Fixtures for the journal tests: a PostgreSQL server, a schema per test, and
`store`: one journal backend (sqlite | postgres) behind one small interface.

PostgreSQL: set PLAIT_TEST_POSTGRES to a DSN (a role that may create schemas) to
use a given server. Otherwise postgresql://postgres@127.0.0.1:5432/test is tried,
and if nothing answers there a throwaway server is started (initdb + pg_ctl in a
temp dir, on a free port, 127.0.0.1 only) and stopped after the session.
Set PLAIT_TEST_POSTGRES=skip to skip the PostgreSQL tests instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plait.journal import Journal, open_journal

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _pg_bindir() -> Path | None:
    candidates: list[str] = []
    if shutil.which("pg_config"):
        out = subprocess.run(
            ["pg_config", "--bindir"], check=False, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        candidates.append(out)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


@dataclass
class _Throwaway:
    bindir: Path
    root: Path
    port: int
    prefix: list[str]

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )


def _start_throwaway() -> _Throwaway:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL tests: no server answers at "
            f"{DEFAULT_DSN} and no initdb/pg_ctl was found (tried `pg_config --bindir` "
            "and /usr/lib/postgresql/*/bin). Install PostgreSQL, or set "
            "PLAIT_TEST_POSTGRES to a DSN, or PLAIT_TEST_POSTGRES=skip."
        )
    root = Path(tempfile.mkdtemp(prefix="plait-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(
                "PostgreSQL tests: running as root and there is no 'postgres' user "
                "to run a throwaway server as"
            )
        if not shutil.which("runuser"):
            pytest.fail("PostgreSQL tests: running as root and `runuser` is missing")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = _Throwaway(bindir, root, port, prefix)
    server.ctl(
        "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
        "-l",
        str(root / "log"),
        "-w",
        "-t",
        "60",
        "start",
    )
    return server


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server the tests may create schemas in."""
    dsn = os.environ.get("PLAIT_TEST_POSTGRES", "")
    if dsn == "skip":
        pytest.skip("PLAIT_TEST_POSTGRES=skip")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("PostgreSQL tests need psycopg: pip install 'plait[postgres]'")
    if dsn:
        if not _answers(dsn):
            pytest.fail("PLAIT_TEST_POSTGRES is set but no PostgreSQL answers there")
        yield dsn
        return
    if _answers(DEFAULT_DSN):
        yield DEFAULT_DSN
        return
    server = _start_throwaway()
    try:
        yield f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    finally:
        try:
            server.ctl("-m", "immediate", "stop")
        finally:
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh, uniquely named schema, dropped after the test."""
    import psycopg

    name = f"plait_t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


@dataclass
class Store:
    """One journal backend under test: how to open it and peek at its tables."""

    kind: str
    spec: str
    count: Callable[[str], int]

    def open(self) -> Journal:
        return open_journal(self.spec)


def _sqlite_store(tmp_path: Path) -> Store:
    path = tmp_path / "runs.db"

    def count(table: str) -> int:
        with sqlite3.connect(path) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    return Store("sqlite", str(path), count)


def _postgres_store(dsn: str, schema: str) -> Store:
    import psycopg

    def count(table: str) -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute(f'SELECT count(*) FROM "{schema}".{table}').fetchone()[0]

    return Store("postgres", with_schema(dsn, schema), count)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return _sqlite_store(tmp_path)
    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("pg_schema")
    return _postgres_store(dsn, schema)


@pytest.fixture
def journal(store: Store) -> Iterator[Journal]:
    j = store.open()
    yield j
    j.close()
