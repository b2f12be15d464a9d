"""Fixtures for the journal tests: a schema per test, and `store`: one journal
backend (sqlite | postgres) behind one small interface. The PostgreSQL server
comes from `postgres_dsn` (tests/conftest.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plait.journal import Journal, open_journal
from tests._support import with_schema


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
