"""Fault tests: journal failures injected at random instants into a real run in a
real child process (see `fault_child.FaultTrial` for every check):

* SQLite: another process holds the write lock (BEGIN IMMEDIATE) past the busy
  timeout, for a while (the writer's retry absorbs it) or until the child ends;
* SQLite: the file system fills up (a 2 MB tmpfs in a private mount namespace);
* PostgreSQL: the child's backend is terminated (pg_terminate_backend).

Each trial: the run completes, or ends within 10 s of the fault with a one-line
JournalError naming the journal and the resume; then a resume finishes it with
no finished call run again. The children use a short busy timeout and retry bound
so the file stays fast; benchmarks/fault_soak.py runs plait's defaults by the 50.
"""

from __future__ import annotations

import random
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import fault_child as fc

TRIALS = 10
RETRY, BUSY = 0.5, 0.25  # the writer's bound and SQLite's lock wait in the children
HOLDS = (0.1, 0.6, None)  # seconds a fault lasts: short, retried through, to the end
SHAPE = {"width": 4, "depth": 6}  # 34 calls, about half a second


def _trials(make, kind: str, tmp_path: Path, seed: int, holds=HOLDS) -> list[fc.TrialResult]:
    calib = make(tmp_path / "calib")
    try:
        duration = fc.calibrate(calib, tmp_path, **SHAPE)
    finally:
        calib.close()

    def one(i: int) -> fc.TrialResult:
        work = tmp_path / f"t{i}"
        work.mkdir()
        fault = make(work)
        try:
            trial = fc.FaultTrial(kind, fault, work, random.Random(f"{seed}-{i}"), duration,
                                  retry=RETRY, busy_timeout=BUSY, hold=holds[i % len(holds)],
                                  **SHAPE)
            return trial.run()
        finally:
            fault.close()

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, range(TRIALS)))


def _check(results: list[fc.TrialResult]) -> None:
    print(*results, sep="\n")
    assert len(results) == TRIALS
    assert all(r.resumed_clean and r.reruns_of_finished == 0 for r in results)
    assert max(r.seconds_to_end for r in results) < 10.0
    # The faults must hit runs: most trials end with an error or ride it out mid-run.
    assert sum(r.outcome == "before" for r in results) <= TRIALS // 3, results


def _mkdir(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


@pytest.mark.timeout(150)
def test_sqlite_lock_held_by_another_process(tmp_path: Path) -> None:
    results = _trials(lambda d: fc.SQLiteLock(_mkdir(d) / "runs.db"), "sqlite-lock",
                      tmp_path, seed=1)
    _check(results)
    long_holds = [r for i, r in enumerate(results) if HOLDS[i % len(HOLDS)] is None]
    assert any(r.outcome == "ended" for r in long_holds), results
    short = [r for i, r in enumerate(results) if HOLDS[i % len(HOLDS)] == HOLDS[0]]
    assert all(r.outcome != "ended" or "create run" in r.error or "update a run" in r.error
               for r in short), results


@pytest.mark.timeout(150)
@pytest.mark.skipif(sys.platform != "linux" or shutil.which("unshare") is None,
                    reason="needs Linux mount namespaces (unshare)")
def test_sqlite_disk_full(tmp_path: Path) -> None:
    results = _trials(lambda d: fc.FullDisk(_mkdir(d)), "sqlite-full", tmp_path, seed=2)
    _check(results)
    assert any(r.outcome == "ended" for r in results), results


@pytest.mark.timeout(150)
def test_postgres_backend_terminated(tmp_path: Path, pg_spec: str) -> None:
    results = _trials(lambda d: fc.PostgresKill(pg_spec), "postgres-kill", tmp_path, seed=3,
                      holds=(None,))
    _check(results)
