"""One interrupt trial of `plait ask` on the bundled model, in a real subprocess.

Shared by tests/compiler/test_cli_interrupt.py (a few trials) and
benchmarks/interrupt_soak.py (many). A trial starts `plait ask QUESTION --model
local --journal J --run-id R`, reading its stderr (the plain view: `plan | ...`,
`task N done ...`) as it comes, and then either sends SIGINT by pid at a chosen
instant (`kind="sigint"`) or passes `--timeout` (`kind="timeout"`). It waits a
bounded time for the exit (SIGKILL in `finally` otherwise) and records the exit
code, the seconds to exit, and what the view had shown when the signal went (the
phase). `problems()` lists what is wrong: a segfault, a wrong exit code, a
traceback, a journal not marked `cancelled`, a finished task without its result.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

QUESTION = "Which is taller, Mount Everest or K2?"
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130
EXPECTED = {"sigint": EXIT_INTERRUPTED, "timeout": EXIT_TIMEOUT}
WAIT_S = 60.0  # the most a trial waits for the process to exit after its signal
# When to send SIGINT: seconds after the first stderr line that matches (started:
# the question's run began, the model loads and reads the planner's prompt next;
# planning: the plan streams; joining: a task is done, the joiner comes next).
MARKERS = {"started": re.compile(r"run \S+ started"), "planning": re.compile(r"plan \| "),
           "joining": re.compile(r"task \d+ done")}
STAMP = re.compile(r"^\[\s*([\d.]+)s\] ")  # the plain view's "[  1.23s] ..." (since its start)


def cli_command(*args: str) -> list[str]:
    """The `plait` command (its console script), run by this interpreter."""
    return [sys.executable, "-c",
            "import sys; from plait.cli import main; sys.argv[0] = 'plait'; main()", *args]


@dataclass(frozen=True, slots=True)
class Trial:
    kind: str  # "sigint" | "timeout"
    trigger: str  # a MARKERS name, or "timeout"
    delay: float  # seconds after the trigger (for a timeout: the --timeout value)
    phase: str  # what the model was doing at the signal (see `_phase`), or "finished"
    returncode: int | None  # None: it did not exit within WAIT_S (then killed)
    exit_s: float  # from the SIGINT (or the timeout's deadline) to the exit
    stderr: str
    journal: str
    run_id: str

    @property
    def segfault(self) -> bool:
        return self.returncode in (-signal.SIGSEGV, 128 + signal.SIGSEGV)

    def problems(self) -> list[str]:
        found = []
        if self.returncode is None:
            found.append(f"no exit within {WAIT_S:g}s")
        elif self.segfault:
            found.append("segmentation fault")
        elif self.returncode != EXPECTED[self.kind]:
            found.append(f"exit code {self.returncode}, not {EXPECTED[self.kind]}")
        if "Traceback" in self.stderr or "Segmentation fault" in self.stderr:
            found.append("a traceback on stderr")
        if self.returncode == EXPECTED[self.kind]:
            found += self.journal_problems()
        return found

    def journal_problems(self) -> list[str]:
        """The run is `cancelled`, and every task the view showed done has its result."""
        from plait.compiler._session import LLM_ROLES
        from plait.journal import open_journal

        if not Path(self.journal).exists():
            return ["no journal written"]
        journal = open_journal(self.journal)
        try:
            record = journal.get_run(self.run_id)
            if record is None:
                return ["the run is not in the journal"]
            state = journal.load(self.run_id)
        finally:
            journal.close()
        found = []
        if record.status != "cancelled":
            found.append(f"journaled as {record.status!r}, not 'cancelled'")
        done = len(set(re.findall(r"task (\d+) done", self.stderr)))
        written = sum(1 for r in state.results.values() if r.ok and r.tool not in LLM_ROLES)
        if written < done:
            found.append(f"{done} task(s) shown done, {written} result(s) journaled")
        return found


def run_trial(kind: str, trigger: str, delay: float, workdir: Path, run_id: str,
              question: str = QUESTION) -> Trial:
    """Start `plait ask`, interrupt it as asked, wait for the exit (bounded)."""
    journal = str(workdir / f"{run_id}.db")
    args = ["ask", question, "--model", "local", "--journal", journal, "--run-id", run_id]
    if kind == "timeout":
        args += ["--timeout", f"{delay:g}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "COLUMNS": "200"}
    lines: list[tuple[float, str]] = []  # (arrival, line)
    seen = threading.Condition()
    start = time.monotonic()
    proc = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        reader = threading.Thread(target=_read, args=(proc, lines, seen), daemon=True)
        reader.start()
        if kind == "sigint":
            phase = _wait_trigger(proc, MARKERS[trigger], delay, lines, seen)
            signalled = time.monotonic()
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT)
        else:
            phase = "?"
            signalled = start + delay  # until the view's start is known, below
        try:
            returncode: int | None = proc.wait(timeout=WAIT_S + (0 if kind == "sigint"
                                                                 else delay))
        except subprocess.TimeoutExpired:
            returncode = None
        ended = time.monotonic()
        proc.stdout.read()  # type: ignore[union-attr]  # the answer, if it finished
        reader.join(timeout=5.0)
        with seen:
            stderr = "".join(line for _, line in lines)
            if kind == "timeout":
                # The timeout runs from (about) the view's start, which its first
                # line dates: its arrival less its own timestamp.
                for arrival, line in lines:
                    stamp = STAMP.match(line)
                    if stamp:
                        signalled = arrival - float(stamp.group(1)) + delay
                        break
        if kind == "timeout":
            phase = _phase(stderr, returncode == 0)
        return Trial(kind, trigger if kind == "sigint" else "timeout", delay, phase, returncode,
                     ended - signalled, stderr, journal, run_id)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _read(proc: subprocess.Popen[str], lines: list[tuple[float, str]],
          seen: threading.Condition) -> None:
    for line in proc.stderr:  # type: ignore[union-attr]
        with seen:
            lines.append((time.monotonic(), line))
            seen.notify_all()
    with seen:
        seen.notify_all()


def _wait_trigger(proc: subprocess.Popen[str], marker: re.Pattern[str], delay: float,
                  lines: list[tuple[float, str]], seen: threading.Condition) -> str:
    """Wait for the marker (bounded), then `delay` more; the phase the view is in."""
    with seen:
        seen.wait_for(lambda: proc.poll() is not None
                      or any(marker.search(line) for _, line in lines), timeout=WAIT_S)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    with seen:
        return _phase("".join(line for _, line in lines), proc.poll() is not None)


def _phase(stderr: str, finished: bool) -> str:
    """What the model was doing, as far as the view shows: "loading/prompt" (the
    run started, no plan line yet), "planning" (plan lines, not yet `join()`),
    "joining" (the plan is complete: its tasks, then the joiner)."""
    if finished:
        return "finished"
    if re.search(r"plan \| \d+\. join\(\)", stderr):
        return "joining"
    if "plan | " in stderr:
        return "planning"
    return "loading/prompt"
