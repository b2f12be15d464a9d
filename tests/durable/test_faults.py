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

import asyncio
import json
import random
import shutil
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import plait
from plait.cli import app
from plait.journal import (
    Intent,
    JournalError,
    JournalTransientError,
    JournalWriter,
    Result,
    RunRecord,
    SQLiteJournal,
)

from . import fault_child as fc

TRIALS = {"sqlite-lock": 6, "sqlite-full": 6, "postgres-kill": 10}  # >= 10 per backend
RETRY, BUSY = 0.5, 0.25  # the writer's bound and SQLite's lock wait in the children
HOLDS = (0.1, 0.6, None)  # seconds a fault lasts: short, retried through, to the end
SHAPE = {"width": 4, "depth": 6}  # 34 calls, about half a second


# --- in one process: the writer's retry, the engine's stop, the CLI's line ---------


class Locker:
    """Another connection holding SQLite's write lock until released."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _journal(tmp_path: Path, timeout: float = 0.1) -> SQLiteJournal:
    journal = SQLiteJournal(tmp_path / "runs.db", timeout=timeout)
    journal.create_run(RunRecord("r", "test"))
    return journal


@pytest.mark.timeout(20)
def test_writer_retries_through_a_lock_then_gives_up_within_its_bound(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    failures: list[BaseException] = []

    async def main() -> None:
        writer = JournalWriter(journal, retry_for=1.5, on_failure=failures.append)
        lock = Locker(tmp_path / "runs.db")
        threading.Timer(0.5, lock.release).start()  # > the busy timeout, < the bound
        await writer.intents([Intent("r", "k1", "t")])  # retried until the lock is gone
        assert failures == []
        lock = Locker(tmp_path / "runs.db")  # now held for good
        t0 = time.monotonic()
        with pytest.raises(JournalError, match=r"gave up after 1\.\ds of retries.*locked"):
            await writer.intents([Intent("r", "k2", "t")])
        assert 1.4 < time.monotonic() - t0 < 3.0
        assert len(failures) == 1 and "runs.db" in str(failures[0])
        t0 = time.monotonic()
        with pytest.raises(JournalError, match="gave up"):
            writer.result(Result("r", "k1", True, 1))
        with pytest.raises(JournalError, match="gave up"):
            await writer.aclose()
        assert time.monotonic() - t0 < 0.5
        lock.release()

    asyncio.run(main())
    state = journal.load("r")
    assert set(state.intents) == {"k1"} and state.in_doubt == ["k1"]


@pytest.mark.timeout(20)
def test_aclose_while_retrying_ends_within_the_bound(tmp_path: Path) -> None:
    journal = _journal(tmp_path)

    async def main() -> None:
        writer = JournalWriter(journal, retry_for=1.0)
        await writer.intents([Intent("r", "k", "t")])
        lock = Locker(tmp_path / "runs.db")
        writer.result(Result("r", "k", True, 1))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(JournalError, match="failed to store a result|gave up"):
            await writer.aclose()
        assert time.monotonic() - t0 < 1.0 + 0.5
        lock.release()

    asyncio.run(main())


class LandsThenDrops:
    """A real journal whose first `fail` writes commit and then report a dropped
    connection, as PostgreSQL does when the link breaks after COMMIT reached it."""

    def __init__(self, journal: SQLiteJournal, fail: int = 1):
        self.journal = journal
        self.location = journal.location
        self.fail = fail

    def write(self, intents: Any = (), results: Any = ()) -> None:
        self.journal.write(intents, results)
        if self.fail:
            self.fail -= 1
            raise JournalTransientError("connection dropped after COMMIT (test)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.journal, name)


@pytest.mark.timeout(20)
def test_a_retried_result_that_had_landed_counts_as_written(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    journal.write([Intent("r", "a", "t"), Intent("r", "b", "t")])
    journal.write([], [Result("r", "b", True, "stored by someone else", finished_at=1.0)])

    async def main() -> None:
        flaky = LandsThenDrops(journal)
        async with JournalWriter(flaky, retry_for=2.0) as writer:  # type: ignore[arg-type]
            writer.result(Result("r", "a", True, {"v": [1, 2]}, started_at=1.0,
                                 finished_at=2.0))
            await writer.flush()  # committed, dropped, retried: "already has a result"
        flaky.fail = 1
        writer = JournalWriter(flaky, retry_for=2.0)  # type: ignore[arg-type]
        writer.result(Result("r", "b", True, "ours", finished_at=2.0))
        with pytest.raises(JournalError, match="already has a result"):
            await writer.aclose()  # a different stored result is never taken for ours

    asyncio.run(main())
    state = journal.load("r")
    assert state.results["a"].value == {"v": [1, 2]}
    assert state.results["b"].value == "stored by someone else"


WAITING: list[str] = []


@plait.tool
async def slow_step(i: int) -> int:
    WAITING.append(f"start {i}")
    await asyncio.sleep(0.2 if i else 0.0)
    return i


@plait.workflow
async def waits_on_nodes(n: int) -> int:
    first = await slow_step(0)
    refs = [slow_step(first + i) for i in range(1, n)]
    return sum([await r for r in refs])


@pytest.mark.timeout(20)
@pytest.mark.parametrize("on_error", ["stop", "continue"])
def test_a_journal_that_stays_locked_ends_the_run(tmp_path: Path, monkeypatch,
                                                  on_error: str) -> None:
    """The body awaits nodes whose results cannot be stored: the run ends within the
    writer's bound with a JournalError naming the journal, the call and the resume;
    nothing is left running; the calls without a result are in doubt."""
    monkeypatch.setenv("PLAIT_JOURNAL_RETRY_SECONDS", "0.5")
    path = tmp_path / "runs.db"
    journal = SQLiteJournal(path, timeout=0.1)
    WAITING.clear()

    async def main() -> None:
        async def lock_soon() -> Locker:
            while len(WAITING) < 4:  # the fan-out started: their intents are in
                await asyncio.sleep(0.005)
            return Locker(path)

        locker = asyncio.create_task(lock_soon())
        t0 = time.monotonic()
        with pytest.raises(JournalError) as info:
            await plait.arun(waits_on_nodes, 6, journal=journal, run_id="locked",
                             on_error=on_error)
        took = time.monotonic() - t0
        (await locker).release()
        message = str(info.value)
        assert took < 3.0, took
        assert str(path) in message and "locked" in message
        assert "plait resume locked" in message and "\n" not in message
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())
    state = journal.load("locked")
    journal.close()
    assert state.in_doubt  # intents without results: in doubt for the resume
    assert all(r.ok for r in state.results.values())
    resumed = plait.run(waits_on_nodes, 6, journal=str(path), run_id="locked",
                        allow_rerun=True)
    assert resumed.value == sum(range(1, 6))


def test_cli_prints_a_journal_failure_as_one_line(tmp_path: Path, monkeypatch) -> None:
    """`plait run --journal` and `plait ask --journal` whose journal gets locked
    mid-run: one line on stderr naming the journal and the resume, exit 2."""
    monkeypatch.setenv("PLAIT_JOURNAL_RETRY_SECONDS", "0.3")
    monkeypatch.setattr("plait.journal._sqlite.DEFAULT_TIMEOUT", 0.1)
    path = tmp_path / "runs.db"
    runner = CliRunner()

    def locked_after(started: int) -> threading.Thread:
        def hold() -> None:
            while len(WAITING) < started:
                time.sleep(0.002)
            lock = Locker(path)
            time.sleep(1.5)
            lock.release()

        thread = threading.Thread(target=hold)
        thread.start()
        return thread

    WAITING.clear()
    thread = locked_after(3)
    r = runner.invoke(app, ["run", f"{__name__}:waits_on_nodes", "6", "--journal", str(path),
                            "--run-id", "cli"])
    thread.join()
    lines = r.stderr.strip().splitlines()  # the progress lines, then the error
    assert r.exit_code == 2, r.stderr
    assert lines[-1].startswith(("error: run cli stopped", "error: run cli ended")), r.stderr
    assert [ln for ln in lines if "error" in ln] == lines[-1:]
    assert str(path) in lines[-1] and "plait resume cli" in lines[-1]
    assert "Traceback" not in r.stderr

    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"match": "Results:", "reply": json.dumps({"action": "finish", "answer": "done"})},
        {"match": "Question:", "reply": "1. slow_step(1)\n2. slow_step(2)\n"
                                        "3. slow_step(3)\n4. join()"},
    ]))
    WAITING.clear()
    thread = locked_after(2)
    r = runner.invoke(app, ["ask", "Step?", "--tools", __name__, "--journal", str(path),
                            "--run-id", "q", "--model", f"sim:ttft=0,tps=2000,script={script}"])
    thread.join()
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, r.stderr
    assert lines[-1].startswith(("error: run q stopped", "error: run q ended")), r.stderr
    assert [ln for ln in lines if "error" in ln] == lines[-1:]
    assert str(path) in lines[-1] and "plait resume q" in lines[-1]
    assert "Traceback" not in r.stderr


# --- in child processes: faults at random instants -----------------------------------


def _trials(make, kind: str, tmp_path: Path, seed: int, holds=HOLDS) -> list[fc.TrialResult]:
    def one(i: int) -> fc.TrialResult:
        work = tmp_path / f"t{i}"
        work.mkdir()
        fault = make(work)
        try:
            trial = fc.FaultTrial(kind, fault, work, random.Random(f"{seed}-{i}"),
                                  retry=RETRY, busy_timeout=BUSY, hold=holds[i % len(holds)],
                                  **SHAPE)
            return trial.run()
        finally:
            fault.close()

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, range(TRIALS[kind])))


def _check(results: list[fc.TrialResult]) -> None:
    assert len(results) == TRIALS[results[0].kind]
    assert all(r.resumed_clean and r.reruns_of_finished == 0 for r in results)
    assert max(r.seconds_to_end for r in results) < 10.0
    # The faults must hit runs: most trials end with an error or ride it out mid-run.
    assert sum(r.outcome == "before" for r in results) <= len(results) // 3, results


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
def test_postgres_backend_terminated(tmp_path: Path, pg_journal: str) -> None:
    results = _trials(lambda d: fc.PostgresKill(pg_journal), "postgres-kill", tmp_path, seed=3,
                      holds=(None,))
    _check(results)
