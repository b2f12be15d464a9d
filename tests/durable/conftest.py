"""Fixtures for the durable-run tests: a journal spec per test, SQLite or PostgreSQL.

The PostgreSQL server comes from `postgres_dsn` (tests/conftest.py); each test
gets its own schema (``?schema=...`` in the DSN), dropped in teardown.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def spec(journal_spec: str) -> str:
    """A journal: a SQLite file in tmp_path, or a PostgreSQL schema of its own."""
    return journal_spec
