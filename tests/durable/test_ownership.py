"""One owner per run: real processes race for one run id, on SQLite and PostgreSQL.

Each trial starts real child processes (tests/durable/owner_child.py) whose
non-idempotent tool appends to a side-effect file, so double execution is seen
outside the journal. Trials: two processes start one fresh run at once; two
resume it at once after a first owner was killed with SIGKILL; an owner stopped
with SIGSTOP (alive: only expiry frees the run) is taken over by a process that
waits, and stops with StaleLeaseError once continued. benchmarks/ownership_soak.py
runs the same trials by the score.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import crash_child as cc
from . import owner_child as oc


@pytest.mark.timeout(90)
def test_two_processes_one_run(spec: str, tmp_path: Path) -> None:
    """2 fresh races and 2 after a kill -9 (two trials at a time, each on its own run
    id): pay runs at most once (once, as the run finishes), both processes exit,
    the loser names the winner's pid."""
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(
            lambda i: oc.race(spec, f"race-{i}", tmp_path, after_kill=i % 2 == 1), range(4)
        ))
    for report in reports:
        assert report.problems == [], report
        assert report.pays == 1 and report.loser_named_owner


@pytest.mark.timeout(60)
def test_a_stopped_owner_is_taken_over_after_its_lease_expires(spec: str, tmp_path: Path) -> None:
    report = oc.expiry(spec, "expiry", tmp_path, ttl=1.2)
    assert report.problems == [], report
    assert report.pays == 1 and report.hangs == 0


def _cli(*args: str, effects: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = oc.child_env()
    if effects is not None:
        env[oc.EFFECTS_ENV] = str(effects)
    return subprocess.run(cc.cli_command(*args), capture_output=True, text=True, env=env,
                          cwd=oc.ROOT, timeout=60)


@pytest.mark.timeout(60)
def test_cli_refuses_a_live_run_and_lists_a_dead_one_as_crashed(tmp_path: Path) -> None:
    """`plait run`/`plait resume` of a run another process owns: one line naming
    it, exit 2, no traceback, nothing run. Once the owner is killed: `plait runs`
    says crashed and how to resume; `plait resume` takes it over at once."""
    spec, effects = str(tmp_path / "runs.db"), tmp_path / "effects"
    owner = oc.start(spec, "cli", effects, prep=30.0)
    try:
        oc.wait_for_effect(effects, "prepare", owner.pid, 30)
        for args in (["run", oc.ENTRY, "o1", "--run-id", "cli"], ["resume", "cli"]):
            out = _cli(*args, "--journal", spec, effects=effects)
            assert out.returncode == 2, out
            lines = out.stderr.strip().splitlines()
            assert lines[-1].startswith("error: run 'cli' is already running"), out.stderr
            assert f"pid {owner.pid} on host" in lines[-1] and "--wait" in lines[-1]
            assert "Traceback" not in out.stderr + out.stdout
        listed = _cli("runs", "--journal", spec)
        assert "running" in listed.stdout and "crashed" not in listed.stdout
    finally:
        oc.kill(owner)
    listed = _cli("runs", "--journal", spec)
    assert listed.returncode == 0 and "crashed" in listed.stdout, listed
    assert "plait resume cli" in listed.stdout
    out = _cli("resume", "cli", "--journal", spec, "--json", effects=effects)
    assert out.returncode == 0, out
    assert [t for t, _, _ in oc.effects(effects)] == ["prepare", "prepare", "pay"]


@pytest.mark.timeout(60)
def test_wait_for_a_live_owner(tmp_path: Path) -> None:
    """`wait=`: a second start waits for the owner to end, then replays its run
    (pay is not run again); without it, the start is refused at once."""
    spec, effects, gate = str(tmp_path / "runs.db"), tmp_path / "effects", tmp_path / "gate"
    owner = oc.start(spec, "w", effects, hold=0.1, gate=gate)
    try:
        oc.wait_for_effect(effects, "pay", owner.pid, 30)
        refused = oc.finish(oc.start(spec, "w", effects), 30)
        waiter = oc.start(spec, "w", effects, wait=30)
        time.sleep(1.5)
        gate.touch()
        waited = oc.finish(waiter, 30)
        first = oc.finish(owner, 30)
    finally:
        oc.kill(owner)
    assert refused.returncode == oc.EXIT_OWNED, refused.describe()
    assert first.returncode == oc.EXIT_DONE, first.describe()
    assert waited.returncode == oc.EXIT_DONE, waited.describe()
    assert [t for t, _, _ in oc.effects(effects)] == ["prepare", "pay"]


@pytest.mark.timeout(60)
def test_a_blocked_event_loop_keeps_the_lease(tmp_path: Path) -> None:
    """A tool blocking the event loop for longer than the ttl does not cost the run
    its lease: the heartbeat is a thread, not a task on the (blocked) loop."""
    spec, effects, gate = str(tmp_path / "runs.db"), tmp_path / "effects", tmp_path / "gate"
    owner = oc.start(spec, "busy", effects, ttl=0.6, hold=0.1, gate=gate)
    try:
        oc.wait_for_effect(effects, "pay", owner.pid, 30)
        time.sleep(1.5)  # well past the ttl, the owner's loop blocked inside pay
        rival = oc.finish(oc.start(spec, "busy", effects, ttl=0.6), 30)
        gate.touch()
        done = oc.finish(owner, 30)
    finally:
        oc.kill(owner)
    assert rival.returncode == oc.EXIT_OWNED, rival.describe()
    assert done.returncode == oc.EXIT_DONE, done.describe()
    assert [t for t, _, _ in oc.effects(effects)] == ["prepare", "pay"]


def test_a_journal_from_before_leases_is_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal written before 002_leases gets the table on open; a run it left
    marked running has no owner, so it is resumed at once (and listed as crashed)."""
    import sqlite3

    import plait
    from plait.journal import open_journal

    monkeypatch.setenv(oc.PREP_ENV, "0")
    monkeypatch.setenv(oc.HOLD_ENV, "0")
    path = tmp_path / "old.db"
    open_journal(str(path)).close()
    with sqlite3.connect(path) as conn:  # as plait before leases left it
        conn.execute("DROP TABLE leases")
        conn.execute("DELETE FROM _plait_migrations WHERE name = '002_leases'")
        conn.execute("INSERT INTO runs VALUES ('old', ?, '{\"args\":[\"o1\"],\"kwargs\":{}}', "
                     "'running', '', 1.0, 1.0, NULL, 0, NULL)", (oc.ENTRY,))
    listed = _cli("runs", "--journal", str(path))
    assert "crashed" in listed.stdout and "plait resume old" in listed.stdout, listed
    with open_journal(str(path)) as j:
        assert sorted(j.applied_migrations()) == [
            "001_initial", "002_leases", "003_rows", "004_calls_by_row"]
    result = plait.run(oc.owner_workflow, "o1", journal=str(path), run_id="old")
    assert result.value == "paid-ready-o1"
    with open_journal(str(path)) as j:
        assert j.get_run("old").status == "done" and j.get_lease("old") is None


def test_ask_has_one_owner_too(tmp_path: Path) -> None:
    """A journaled question another live process owns (here: a fresh lease from
    another host) is refused before the model is called; with `wait=` it is asked
    once that owner releases it."""
    import threading
    from collections.abc import Sequence

    import plait
    from plait.journal import RunOwnedError, open_journal
    from plait.llm import Message, SimLLM

    calls: list[str] = []

    def script(messages: Sequence[Message]) -> str:
        calls.append("llm")
        return ('{"action": "finish", "answer": "x"}' if "Finish:" in messages[0].content
                else '1. lookup("x")\n2. join()')

    @plait.tool
    def lookup(name: str) -> str:
        """Look `name` up."""
        return name

    spec = str(tmp_path / "runs.db")
    with open_journal(spec) as j:
        other = j.acquire("q", ttl=30, host="other.example", pid=1)
        with pytest.raises(RunOwnedError, match="pid 1 on host other.example"):
            plait.ask("x?", [lookup], model=SimLLM(script, ttft=0.0, tps=5000), journal=spec,
                      run_id="q")
        assert calls == []
        threading.Timer(0.5, j.release, (other,)).start()
        answer = plait.ask("x?", [lookup], model=SimLLM(script, ttft=0.0, tps=5000),
                           journal=spec, run_id="q", wait=10)
    assert answer.text == "x" and calls == ["llm", "llm"]
