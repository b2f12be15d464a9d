"""Fixtures for the durable-run tests: a journal spec per test, SQLite or PostgreSQL.

The PostgreSQL server comes from `postgres_dsn` (tests/conftest.py); each test
gets its own schema (``?schema=...`` in the DSN), dropped in teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support import with_schema


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
