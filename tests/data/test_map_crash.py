"""A 5,000-row job killed with SIGKILL at random instants, then resumed, on SQLite
and PostgreSQL: the output holds every row exactly once, and no call whose result
was journaled before a kill is paid again after it (the child's counter file is
the ground truth of what was paid, see map_crash_child.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plait.journal import RunNotFoundError, open_journal
from tests._support import end

CHILD = Path(__file__).with_name("map_crash_child.py")
ROWS = 5_000
KILLS = 5  # per job; two jobs per backend: 20 kills in all
WINDOW = 64


def _start(spec: str, run_id: str, src: Path, out: Path, counter: Path,
           llm: str | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "--journal", spec, "--run-id", run_id,
         "--source", str(src), "--out", str(out), "--counter", str(counter),
         "--window", str(WINDOW), *(["--llm", llm] if llm else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(CHILD.parents[2])},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        end(proc)
        raise AssertionError(f"child did not start: {line!r} {proc.stderr.read()}")
    return proc


def _journaled(spec: str, run_id: str) -> set[str]:
    journal = open_journal(spec)
    try:
        return {k for k, r in journal.load(run_id).results.items() if r.ok}
    except RunNotFoundError:  # killed before the job's run was created
        return set()
    finally:
        journal.close()


def _paid(counter: Path) -> list[str]:
    return counter.read_text().split() if counter.exists() else []


def _wait_for_paid(proc: subprocess.Popen[str], counter: Path, calls: int) -> None:
    """Returns once the counter holds `calls` lines, or the child has ended."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and len(_paid(counter)) < calls:
        if time.monotonic() > deadline:
            raise AssertionError(f"the child paid {len(_paid(counter))} of {calls} calls in 60 s")
        time.sleep(0.005)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("job", range(2))
def test_kill_at_random_instants_then_resume(journal_spec: str, tmp_path: Path,
                                             job: int) -> None:
    rng = random.Random(job)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"row {i}"}) + "\n"
                           for i in range(ROWS)))
    out = tmp_path / "out.jsonl"
    counter = tmp_path / "paid.txt"
    run_id = f"crash-{job}"
    kills = repaid = 0
    journaled: set[str] = set()  # results committed before the last kill
    for attempt in range(KILLS + 1):
        before = _paid(counter)
        proc = _start(journal_spec, run_id, src, out, counter)
        last = attempt == KILLS
        if not last:
            # A random instant, counted in calls paid since the start (1 to 2,000 of
            # the job's ~13,500), not in seconds: however fast the machine, each kill
            # lands mid-job, after a random amount of work.
            _wait_for_paid(proc, counter, len(before) + rng.randint(1, 2000))
        if last or proc.poll() is not None:  # run to the end
            try:
                _, stderr = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    end(proc)
            assert proc.returncode == 0, stderr
        else:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # The output is written at the job's end only: a file here means the kill
            # came after the job had finished (while its process was exiting), and the
            # file is checked below as a finished job's: every kept row once, in order.
            if not out.exists():
                kills += 1
        new = _paid(counter)[len(before):]
        # Nothing whose result was journaled before a kill is paid again after it.
        assert not set(new) & journaled, "a journaled call was paid twice"
        repaid += len(set(new) & set(before))
        if proc.returncode == 0 or out.exists():
            break
        journaled = _journaled(journal_spec, run_id)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [i for i in range(ROWS) if i % 10 >= 3]
    assert [r["id"] for r in rows] == expected  # every kept row exactly once, in order
    assert rows[0] == {"id": 3, "verdict": "judge(answer(gen(3)))"}
    # Calls paid twice were in flight at a kill: at most a window's rows' worth each.
    assert repaid <= kills * WINDOW
    assert kills == KILLS, f"only {kills} kills landed mid-job"


@pytest.mark.timeout(240)
def test_llm_calls_journaled_before_a_kill_are_never_asked_again(tmp_path: Path) -> None:
    """The same on LLM calls over HTTP: the sim-server counts every request; after
    SIGKILLs and a resume, no prompt whose call had a journaled result before a
    kill reaches the server again, and every row is in the output once."""
    from plait.llm import SimServer

    asked: list[tuple[str, str]] = []

    def script(messages: Any, role: str) -> str:
        text = messages[-1].content
        asked.append((role, text))
        return f"{role}[{text.split(' ', 1)[1]}]"

    rows = 300
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(rows)))
    out, counter, spec = tmp_path / "out.jsonl", tmp_path / "paid.txt", str(tmp_path / "j.db")
    rng = random.Random(7)
    kills = 0
    journaled: set[str] = set()  # prompts whose calls had a result before the last kill
    with SimServer(script, ttft=0.005, tps=2000) as server:
        for attempt in range(4):
            before = len(asked)
            proc = _start(spec, "llm", src, out, counter, llm=server.base_url)
            if attempt < 3:
                time.sleep(rng.uniform(0.3, 1.5))
            if attempt == 3 or proc.poll() is not None:
                _, stderr = proc.communicate(timeout=120)
                assert proc.returncode == 0, stderr
            else:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
            again = {text for _, text in asked[before:]} & journaled
            assert not again, f"journaled calls asked again: {sorted(again)[:3]}"
            if proc.returncode == 0:
                break
            journaled = _journaled_prompts(spec, "llm")
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == [i for i in range(rows) if i % 10 >= 3]
    prompts = [text for _, text in asked]
    paid_twice = len(prompts) - len(set(prompts))
    assert paid_twice <= kills * WINDOW  # only calls in flight at a kill
    assert kills >= 1


def _journaled_prompts(spec: str, run_id: str) -> set[str]:
    journal = open_journal(spec)
    try:
        state = journal.load(run_id)
    except RunNotFoundError:
        return set()
    finally:
        journal.close()
    done = {k for k, r in state.results.items() if r.ok}
    return {intent.arguments["request"]["messages"][-1][1]
            for k, intent in state.intents.items() if k in done}
