"""Fixtures every test package shares: a PostgreSQL server, and a user data
directory of their own.

No test touches the real per-user journal (the CLI journals every run there by
default): $XDG_DATA_HOME points into a temp dir for the whole session (so module-
level copies of the environment, and the subprocesses given them, have it too),
and to a fresh one for each test; $PLAIT_JOURNAL is unset.

`postgres_dsn` (session): PLAIT_TEST_POSTGRES names a server (a DSN whose role may
create schemas), or "skip" to skip the tests that need one. Otherwise
postgresql://postgres@127.0.0.1:5432/test is used, and where nothing answers
there a throwaway server is started (initdb + pg_ctl in a temp dir, on a free
port, listening on 127.0.0.1 only) and stopped after the session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._support import DEFAULT_DSN, free_port


def pytest_configure(config: pytest.Config) -> None:
    home = tempfile.mkdtemp(prefix="plait-test-data-")
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))
    os.environ["XDG_DATA_HOME"] = home
    os.environ.pop("PLAIT_JOURNAL", None)


@pytest.fixture(autouse=True)
def _user_data_home(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own per-user journal (the default one), in a temp dir, and a
    config directory without a price file (the user's prices would change costs)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config-home")))
    monkeypatch.delenv("PLAIT_JOURNAL", raising=False)
    monkeypatch.delenv("PLAIT_PRICES", raising=False)


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
    """A fresh, uniquely named schema on the test PostgreSQL, dropped after the test."""
    import psycopg

    name = f"plait_t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_journal(postgres_dsn: str, pg_schema: str) -> str:
    """A PostgreSQL journal spec in a schema of its own (`pg_schema`)."""
    from tests._support import with_schema

    return with_schema(postgres_dsn, pg_schema)


@pytest.fixture(params=["sqlite", "postgres"])
def journal_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A journal spec for each backend: a SQLite file, or `pg_journal`."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return request.getfixturevalue("pg_journal")
