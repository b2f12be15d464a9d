"""A dataset job's writer killed with SIGKILL at random instants: every row it
acknowledged is done, and no row is done whose results are not all stored (the
row record commits with, never before, the results queued before it)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from pathlib import Path

import pytest

from plait.journal import Journal, RunRecord, open_journal
from tests._support import with_schema

from ._rows_crash_child import CALLS, row_value
from .test_crash import kill_child

CHILD = Path(__file__).with_name("_rows_crash_child.py")


def check(journal: Journal, run_id: str, acknowledged: set[str]) -> int:
    rows, after = [], -1
    while page := journal.iter_rows(run_id, after=after, limit=500):
        rows += page
        after = page[-1].ordinal
    done = {r.row_key: r for r in rows}
    assert all(r.status == "done" and r.value == row_value(r.row_key) for r in rows)
    lost = acknowledged - done.keys()
    assert not lost, f"acknowledged rows lost: {sorted(lost)[:5]}"
    assert journal.row_status(run_id, sorted(acknowledged)) == dict.fromkeys(acknowledged, "done")
    state = journal.load(run_id)
    per_row = Counter(r.row_key for r in state.results.values() if r.ok)
    for key, record in done.items():
        assert per_row[key] == CALLS, f"row {key} is done with {per_row[key]} of its results"
        assert state.results[f"{key}/{CALLS - 1}"].value == record.value
    return len(done)


def run_trials(spec: str, trials: int, workdir: Path, seed: int) -> None:
    rng = random.Random(seed)
    stored = 0
    for t in range(trials):
        run_id = f"rows-{t}-{uuid.uuid4().hex[:6]}"
        with open_journal(spec) as j:
            j.create_run(RunRecord(run_id, "job"))
        lines = kill_child(CHILD, [spec, run_id, str(rng.choice([1, 8, 32]))],
                           workdir / f"{run_id}.out", rng)
        acknowledged = {line[2:] for line in lines if line.startswith("D ")}
        with open_journal(spec) as j:
            stored += check(j, run_id, acknowledged)
    assert stored > trials, f"seed {seed}"  # the kills did land mid-stream


@pytest.mark.timeout(120)
def test_sqlite_rows_survive_kill_9(tmp_path: Path) -> None:
    run_trials(str(tmp_path / "rows.db"), 10, tmp_path, random.randrange(1 << 30))


@pytest.mark.timeout(120)
def test_postgres_rows_survive_kill_9(tmp_path: Path, postgres_dsn: str, pg_schema: str) -> None:
    run_trials(with_schema(postgres_dsn, pg_schema), 6, tmp_path, random.randrange(1 << 30))
