"""`plait run flow.py:wf` on the default journal, stopped by SIGKILL or Ctrl-C, then
resumed by the command plait itself prints, run verbatim, from another directory.

Real processes: the workflow file lives in a temp dir and imports `helper`, a
module next to it (importable as with `python flow.py`). The helper's tools
append each execution to a counter file, kept apart from the journal: the
ground truth of what ran. `slow`, the last call, hangs while $PLAIT_TEST_HANG is
set, so the run is stopped at a known place: every `step` result journaled.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from . import crash_child as cc

pytestmark = pytest.mark.timeout(90)

HELPER = textwrap.dedent('''
    import asyncio
    import os

    import plait


    def _count(what: str) -> None:
        with open(os.environ["PLAIT_TEST_COUNTER"], "a") as f:  # one small append
            f.write(what + "\\n")


    @plait.tool
    async def step(x: int) -> int:
        """Not idempotent: it must never run twice."""
        _count(f"step {x}")
        return x + 1


    @plait.tool(idempotent=True)
    async def slow(x: int) -> int:
        _count(f"slow {x}")
        if os.environ.get("PLAIT_TEST_HANG"):
            await asyncio.sleep(120)
        return x * 10
''')
FLOW = textwrap.dedent('''
    import plait
    from helper import slow, step


    @plait.workflow
    async def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = await step(x)
        return await slow(x)
''')


def _project(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """flow/flow.py + flow/helper.py; a counter; the environment of every command."""
    (tmp_path / "flow").mkdir()
    (tmp_path / "flow" / "flow.py").write_text(FLOW)
    (tmp_path / "flow" / "helper.py").write_text(HELPER)
    (tmp_path / "elsewhere").mkdir()
    counter = tmp_path / "ran"
    env = {**cc.child_env(), "PLAIT_TEST_COUNTER": str(counter), "COLUMNS": "250"}
    env.pop("PLAIT_JOURNAL", None)  # the default journal, in the test's $XDG_DATA_HOME
    return tmp_path / "elsewhere", counter, env


def _ran(counter: Path) -> Counter[str]:
    return Counter(counter.read_text().splitlines()) if counter.exists() else Counter()


def _start_hanging(tmp_path: Path, counter: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`plait run flow/flow.py:chain 3` from tmp_path, until `slow` runs (and hangs)."""
    proc = subprocess.Popen(cc.cli_command("run", "flow/flow.py:chain", "3"), cwd=tmp_path,
                            env={**env, "PLAIT_TEST_HANG": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not _ran(counter)["slow 3"]:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"the run did not reach slow: exit {proc.returncode}\n{out}\n{err}")
        time.sleep(0.02)
    return proc


def _run_verbatim(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A `plait ...` command line as printed, with this interpreter's `plait`."""
    argv = shlex.split(command)
    assert argv[0] == "plait", command
    return subprocess.run(cc.cli_command(*argv[1:]), cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _check_resumed(done: subprocess.CompletedProcess, counter: Path) -> None:
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "30"
    assert "4 calls, 3 replayed from the journal" in done.stderr
    # Every step ran once (replayed on resume); slow, cut off and idempotent, twice.
    assert _ran(counter) == {"step 0": 1, "step 1": 1, "step 2": 1, "slow 3": 2}


def test_a_file_workflow_killed_with_sigkill_resumes_by_the_printed_hint(tmp_path: Path) -> None:
    elsewhere, counter, env = _project(tmp_path)
    proc = _start_hanging(tmp_path, counter, env)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    listed = _run_verbatim("plait runs", elsewhere, env)
    assert listed.returncode == 0, listed.stderr
    hint = next(line for line in listed.stdout.splitlines() if line.startswith("crashed:"))
    command = hint.split("continue it with: ", 1)[1]
    assert shlex.split(command)[:2] == ["plait", "resume"] and "--journal" not in command
    _check_resumed(_run_verbatim(command, elsewhere, env), counter)


def test_ctrl_c_prints_a_resume_command_that_works_verbatim(tmp_path: Path) -> None:
    elsewhere, counter, env = _project(tmp_path)
    proc = _start_hanging(tmp_path, counter, env)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted; resume run "), err
    command = last.split(" with: ", 1)[1]
    run_id = shlex.split(command)[2]
    assert command == f"plait resume {run_id}"  # the default journal: no --journal
    _check_resumed(_run_verbatim(command, elsewhere, env), counter)
    again = _run_verbatim(command, elsewhere, env)  # a done run replays to its end
    assert again.returncode == 0 and "4 calls, 4 replayed" in again.stderr, again.stderr


def test_a_helper_module_next_to_the_file_imports(tmp_path: Path) -> None:
    """As `python flow.py` has it; once per process (no traceback, no journal needed)."""
    _, counter, env = _project(tmp_path)
    done = subprocess.run(cc.cli_command("run", "flow/flow.py:chain", "2", "--no-journal"),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "20"
    assert not Path(os.environ["XDG_DATA_HOME"], "plait").exists()  # nothing journaled
