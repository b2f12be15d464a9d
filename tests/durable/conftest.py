"""Fixtures for the durable-run tests: a journal spec per test, SQLite or PostgreSQL.

PostgreSQL: PLAIT_TEST_POSTGRES names a server (a DSN whose role may create
schemas), or "skip" to skip those tests. Otherwise
postgresql://postgres@127.0.0.1:5432/test is tried, and when nothing answers
there a throwaway server is started (initdb + pg_ctl in a temp dir, on a free
port, listening on 127.0.0.1 only) and stopped after the session. Each test gets
its own schema (``?schema=...`` in the DSN), dropped in teardown.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


def _answers(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _bindir() -> Path | None:
    candidates = []
    if shutil.which("pg_config"):
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True,
                                         text=True, timeout=10).stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server the tests may create schemas in."""
    dsn = os.environ.get("PLAIT_TEST_POSTGRES", "")
    if dsn == "skip":
        pytest.skip("PLAIT_TEST_POSTGRES=skip")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("the PostgreSQL tests need psycopg 3: pip install 'psycopg[binary]'")
    if dsn:
        if not _answers(dsn):
            pytest.fail(f"PLAIT_TEST_POSTGRES={dsn!r}: no PostgreSQL answers there")
        yield dsn
        return
    if _answers(DEFAULT_DSN):
        yield DEFAULT_DSN
        return
    bindir = _bindir()
    if bindir is None:
        pytest.fail(f"no PostgreSQL answers at {DEFAULT_DSN} and no initdb/pg_ctl was found "
                    "(`pg_config --bindir`, /usr/lib/postgresql/*/bin) to start one; set "
                    "PLAIT_TEST_POSTGRES to a DSN, or to skip")
    root = Path(tempfile.mkdtemp(prefix="plait-durable-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root with no 'postgres' user to run a throwaway server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = root / "data"
    ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                        "-A", "trust", "--no-sync"], check=True, capture_output=True, timeout=120)
        subprocess.run([*ctl, "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                        "-l", str(root / "log"), "-w", "-t", "60", "start"],
                       check=True, capture_output=True, timeout=90)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start a throwaway PostgreSQL with {bindir}: "
                    f"{exc.stderr.decode(errors='replace')[-500:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_spec(postgres_dsn: str) -> Iterator[str]:
    """A journal DSN with a fresh schema, dropped after the test."""
    import psycopg

    schema = f"plait_d_{uuid.uuid4().hex[:12]}"
    yield with_schema(postgres_dsn, schema)
    with psycopg.connect(postgres_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A journal: a SQLite file in tmp_path, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return request.getfixturevalue("pg_spec")
