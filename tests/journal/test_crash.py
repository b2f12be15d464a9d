"""Crash durability of the store alone: a child writing through the JournalWriter
is killed with SIGKILL at a random instant; every record it acknowledged is in the
journal afterwards, and the journal is consistent."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from plait.journal import Journal, RunRecord, open_journal
from tests._support import with_schema

from ._crash_child import expected_value

CHILD = Path(__file__).with_name("_crash_child.py")
ROOT = Path(__file__).resolve().parents[2]


def kill_child(child_path: Path, args: list[str], out_path: Path, rng: random.Random) -> list[str]:
    """Run a child script until it prints READY, kill it with SIGKILL at a random
    instant soon after, and return the complete lines it printed."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with open(out_path, "wb") as out:
        child = subprocess.Popen(
            [sys.executable, str(child_path), *args],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 15
            while b"READY" not in out_path.read_bytes():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"child did not start: {child.stderr.read().decode()}")
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.15))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL, child.returncode
    return [line.decode() for line in out_path.read_bytes().split(b"\n")[:-1]]


def crash_once(spec: str, run_id: str, workdir: Path, rng: random.Random) -> tuple[set, set]:
    """Run the child, kill it at a random instant, return the keys it acknowledged."""
    lines = kill_child(CHILD, [spec, run_id, str(rng.choice([1, 8, 32]))],
                       workdir / f"{run_id}.out", rng)
    intents, results = set(), set()
    for line in lines:  # only complete lines
        kind, _, key = line.partition(" ")
        if kind == "I":
            intents.add(key)
        elif kind == "R":
            results.add(key)
    return intents, results


def check(journal: Journal, run_id: str, intents: set, results: set) -> int:
    state = journal.load(run_id)
    missing_i = intents - state.intents.keys()
    missing_r = results - state.results.keys()
    assert not missing_i, f"acknowledged intents lost: {sorted(missing_i)[:5]}"
    assert not missing_r, f"acknowledged results lost: {sorted(missing_r)[:5]}"
    for key, result in state.results.items():
        assert key in state.intents, f"result {key} without its intent"
        assert result.ok and result.value == expected_value(key), key
    # Unacknowledged but committed is fine; in doubt means intent without result.
    assert set(state.in_doubt) == state.intents.keys() - state.results.keys()
    return len(intents) + len(results)


def run_trials(spec: str, trials: int, workdir: Path, seed: int) -> None:
    rng = random.Random(seed)
    acknowledged = 0
    for t in range(trials):
        run_id = f"crash-{t}-{uuid.uuid4().hex[:6]}"
        with open_journal(spec) as j:
            j.create_run(RunRecord(run_id, "crash"))
        intents, results = crash_once(spec, run_id, workdir, rng)
        with open_journal(spec) as j:
            acknowledged += check(j, run_id, intents, results)
    assert acknowledged > trials  # the kills did land mid-stream


@pytest.mark.timeout(120)
def test_sqlite_survives_kill_9(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    path = tmp_path / "crash.db"
    run_trials(str(path), 20, tmp_path, seed)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"seed {seed}"


@pytest.mark.timeout(120)
def test_postgres_survives_kill_9(tmp_path: Path, postgres_dsn: str, pg_schema: str) -> None:
    seed = random.randrange(1 << 30)
    run_trials(with_schema(postgres_dsn, pg_schema), 10, tmp_path, seed)
