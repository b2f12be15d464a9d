"""A journal of real runs (built once), and the web view served over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.ui import UIServer
from tests.ui._runs import make_runs


@pytest.fixture(scope="session")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("ui-journal") / "runs.db")
    make_runs(path)
    return path


@pytest.fixture
def ui(journal: str) -> Iterator[UIServer]:
    with UIServer(journal) as server:
        yield server


@pytest.fixture
def artifacts() -> Path:
    """Where a test keeps what a person may want to look at (gitignored)."""
    path = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path
