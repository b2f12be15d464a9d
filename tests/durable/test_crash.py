"""Crash tests: a child process running a journaled workflow is SIGKILLed at a
random instant, the journal is checked against an independent execution counter,
and the run is resumed to the end (see `crash_child.Trial` for every check).

52 random trials per backend (2 seeds x 26, two at a time), plus crashes at known
places (`--die-in TOOL`). benchmarks/crash_soak.py runs the same trial by the
hundred.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from . import crash_child as cc

TRIALS = 26  # per test; 2 seeds per backend


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [11, 12])
def test_random_kills(spec: str, seed: int, tmp_path: Path) -> None:
    duration = cc.calibrate(spec, tmp_path, f"calib-{uuid.uuid4().hex[:8]}")
    stats = cc.run_trials(spec, TRIALS, tmp_path, seed=seed, duration=duration, parallel=2)
    assert stats.trials == TRIALS
    assert stats.violations == []
    # The kills must land mid-run often enough for the trial to mean something.
    assert stats.kills >= TRIALS // 2, stats
    assert stats.mid_run >= TRIALS // 4, stats
    assert stats.in_doubt_seen > 0, stats


def _die(spec: str, run_id: str, counter: Path, tool: str) -> cc.Outcome:
    out = cc.run_child(cc.child_command(spec, run_id, counter, die_in=tool), cc.child_env(),
                       timeout=60)
    assert out.returncode == -9, out.describe()  # it killed itself inside `tool`
    return out


def _load(spec: str, run_id: str):
    journal = cc.plait_journal(spec)
    try:
        return journal.load(run_id)
    finally:
        journal.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("plain_resumes", [1, 2], ids=["refused-once", "refused-twice"])
def test_non_idempotent_in_doubt_needs_allow_rerun(
    spec: str, tmp_path: Path, plain_resumes: int
) -> None:
    """The child dies inside the first `charge` (not idempotent): resume stops with
    InDoubtError naming it and does not run it, however often it is asked (a
    refused resume must not turn "in doubt" into something a later plain resume
    re-runs); with allow_rerun it runs once more and the run finishes."""
    run_id, counter = "die-charge", tmp_path / "count"
    _die(spec, run_id, counter, "charge")
    state = _load(spec, run_id)
    doubt = [k for k in state.in_doubt if state.intents[k].tool == "charge"]
    assert doubt, state.in_doubt
    ran = cc.read_counter(counter)
    doubt = [k for k in doubt if ran[k] == 1]  # started (some intents never reached the tool)
    assert doubt

    for attempt in range(plain_resumes):
        out = cc.run_child(cc.child_command(spec, run_id, counter), cc.child_env(), timeout=60)
        assert out.returncode == cc.EXIT_IN_DOUBT, f"plain resume #{attempt + 1}: {out.describe()}"
        error = out.report["error"]
        assert "InDoubtError" in error and "allow_rerun" in error
        assert all(k[:12] in error for k in doubt), (doubt, error)
        now = cc.read_counter(counter)
        assert [now[k] for k in doubt] == [1] * len(doubt), f"plain resume #{attempt + 1} re-ran"

    out = cc.run_child(cc.child_command(spec, run_id, counter, allow_rerun=True), cc.child_env(),
                       timeout=60)
    assert out.returncode == cc.EXIT_DONE, out.describe()
    assert out.report["value"] == cc.expected_value(8)
    final = cc.read_counter(counter)
    assert [final[k] for k in doubt] == [2] * len(doubt)  # the same key in both processes
    assert all(final[k] == 1 for k in state.results)
    assert len(final) == cc.node_count(8)


@pytest.mark.timeout(60)
def test_idempotent_in_doubt_reruns_by_itself(spec: str, tmp_path: Path) -> None:
    """Dying inside `step` (idempotent): a plain resume runs it again under the same
    node key, replays every finished call and finishes."""
    run_id, counter = "die-step", tmp_path / "count"
    _die(spec, run_id, counter, "step")
    state = _load(spec, run_id)
    doubt = set(state.in_doubt)
    assert doubt and {state.intents[k].tool for k in doubt} <= cc.IDEMPOTENT
    before = cc.read_counter(counter)
    died_in = [k for k in doubt if before[k] == 1 and state.intents[k].tool == "step"]
    assert died_in, (before, doubt)
    out = cc.run_child(cc.child_command(spec, run_id, counter), cc.child_env(), timeout=60)
    assert out.returncode == cc.EXIT_DONE, out.describe()
    assert out.report["value"] == cc.expected_value(8)
    assert out.report["replayed"] == sum(r.ok for r in state.results.values())
    counts = cc.read_counter(counter)
    # Each call in doubt ran once more, under the same node key (node_key() is stable
    # across processes); nothing with a result ran again; every node ran.
    assert {k: counts[k] - before[k] for k in doubt} == dict.fromkeys(doubt, 1)
    assert all(counts[k] == 1 for k in state.results)
    assert len(counts) == cc.node_count(8)
    final = _load(spec, run_id)
    assert final.run.status == "done" and not final.in_doubt


@pytest.mark.timeout(60)
def test_plait_resume_after_a_crash(spec: str, tmp_path: Path) -> None:
    """`plait resume RUN_ID` imports the recorded entry and finishes a crashed run;
    its in-doubt refusal exits 1 with the message."""
    run_id, counter = "die-publish", tmp_path / "count"
    _die(spec, run_id, counter, "publish")
    env = cc.child_env(counter)
    out = cc.run_child(cc.cli_command("resume", run_id, "--journal", spec, "--json"), env)
    assert out.returncode == 1, out.describe()
    assert "InDoubtError" in out.stdout and "publish" in out.stdout
    out = cc.run_child(
        cc.cli_command("resume", run_id, "--journal", spec, "--json", "--allow-rerun"), env
    )
    assert out.returncode == 0, out.describe()
    report = out.report
    assert report["status"] == "done" and report["value"] == cc.expected_value(8)
    assert report["replayed"] == cc.node_count(8) - 1
    counts = cc.read_counter(counter)
    assert sorted(counts.values()) == [1] * (cc.node_count(8) - 1) + [2]
