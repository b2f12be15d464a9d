"""The ownership tests' child program, and the parent side that races and checks it.

Child:

    python tests/durable/owner_child.py --journal SPEC --run-id R --effects FILE
        [--ttl 15] [--wait 0] [--prep 0.3] [--hold 1.2]

runs `owner_workflow` journaled: `prepare` (idempotent, sleeps --prep) then `pay`
(NOT idempotent; blocks the event loop for --hold seconds). Each tool, the moment
it starts, appends "<tool> <pid> <time>\\n" to FILE (O_APPEND, one write(2)), the
ground truth of what ran, kept apart from the journal. The sleeps come from the
environment, not the arguments, so processes with different timings still run
the same journaled run.

The child prints one JSON line {"status", "error_type", "error", "pid"}. Exit
status: 0 done, 1 other failure, 2 crashed, 3 stopped by a call in doubt,
4 refused (RunOwnedError), 5 lost its lease (StaleLeaseError).

Parent: `race` (two processes start or resume one run id at once, fresh or after
a kill -9 of a first owner) and `expiry` (the owner is stopped with SIGSTOP, a
second process waits its lease out and takes over, the first is continued and
must stop) run one trial each; tests/durable/test_ownership.py and
benchmarks/ownership_soak.py share them.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Import this file as its package module, so the run's entry is
    # "tests.durable.owner_child:owner_workflow" in every process (and for `plait`).
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[2]))
    from tests.durable import owner_child as _module

    _sys.exit(_module.main())

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plait
from plait.journal import RunOwnedError, StaleLeaseError

EFFECTS_ENV = "PLAIT_OWNER_EFFECTS"
PREP_ENV = "PLAIT_OWNER_PREP"
HOLD_ENV = "PLAIT_OWNER_HOLD"
GATE_ENV = "PLAIT_OWNER_GATE"
ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve()
ENTRY = "tests.durable.owner_child:owner_workflow"
EXIT_DONE, EXIT_FAILED, EXIT_CRASHED, EXIT_IN_DOUBT, EXIT_OWNED, EXIT_LOST = 0, 1, 2, 3, 4, 5


# --- the child ------------------------------------------------------------------------


def _effect(tool: str) -> None:
    path = os.environ.get(EFFECTS_ENV)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{tool} {os.getpid()} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)


@plait.tool(idempotent=True)
async def prepare(order: str) -> str:
    _effect("prepare")
    await asyncio.sleep(float(os.environ.get(PREP_ENV, "0.3")))
    return f"ready-{order}"


@plait.tool
async def pay(ready: str) -> str:
    """The side effect that must never run twice. It blocks the event loop on
    purpose (time.sleep in an async tool): the lease must not depend on the loop."""
    _effect("pay")
    gate = os.environ.get(GATE_ENV)
    deadline = time.monotonic() + 30
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(float(os.environ.get(HOLD_ENV, "1.2")))
    return f"paid-{ready}"


@plait.workflow
async def owner_workflow(order: str) -> str:
    return await pay(prepare(order))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--journal", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--effects", required=True)
    p.add_argument("--ttl", type=float, default=15.0)
    p.add_argument("--wait", type=float, default=0.0)
    p.add_argument("--prep", type=float, default=0.3)
    p.add_argument("--hold", type=float, default=1.2)
    p.add_argument("--gate", default="", help="pay also waits until this file exists")
    args = p.parse_args(argv)
    os.environ[GATE_ENV] = args.gate
    os.environ[EFFECTS_ENV] = args.effects
    os.environ[PREP_ENV] = str(args.prep)
    os.environ[HOLD_ENV] = str(args.hold)
    report: dict[str, Any] = {"pid": os.getpid(), "error_type": None, "error": None}
    try:
        result = plait.run(owner_workflow, "o1", journal=args.journal, run_id=args.run_id,
                           lease_ttl=args.ttl, wait=args.wait, raise_on_error=False)
    except RunOwnedError as exc:
        return _say(report, "refused", exc, EXIT_OWNED)
    except StaleLeaseError as exc:
        return _say(report, "lost", exc, EXIT_LOST)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        return _say(report, "crashed", exc, EXIT_CRASHED)
    if result.ok:
        return _say(report, "done", None, EXIT_DONE)
    if any(isinstance(e, plait.InDoubtError) for e in result.errors.values()):
        return _say(report, "in doubt", result.error, EXIT_IN_DOUBT)
    return _say(report, "failed", result.error, EXIT_FAILED)


def _say(report: dict[str, Any], status: str, exc: BaseException | None, code: int) -> int:
    report["status"] = status
    if exc is not None:
        report["error_type"] = type(exc).__name__
        report["error"] = str(exc)
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    return code


# --- the parent -----------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def start(spec: str, run_id: str, effects: Path, **options: Any) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(CHILD), "--journal", spec, "--run-id", run_id,
           "--effects", str(effects)]
    for name, value in options.items():
        cmd += [f"--{name}", str(value)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(), cwd=ROOT)


@dataclass
class Outcome:
    pid: int
    returncode: int | None  # None: it did not exit in time (a hang; it was killed)
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return {}

    def describe(self) -> str:
        return (f"pid {self.pid} exit {self.returncode}\n--- stdout\n{self.stdout[-2000:]}\n"
                f"--- stderr\n{self.stderr[-2000:]}")


def finish(proc: subprocess.Popen[bytes], timeout: float) -> Outcome:
    """Wait for `proc` at most `timeout` seconds; a child still running then is a
    hang: it is killed (by its pid) and reported with returncode None."""
    hung = False
    try:
        out, err = proc.communicate(timeout=max(0.1, timeout))
    except subprocess.TimeoutExpired:
        hung = True
        kill(proc)
        out, err = proc.communicate()
    return Outcome(proc.pid, None if hung else proc.returncode, out.decode(errors="replace"),
                   err.decode(errors="replace"))


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL `proc` (continuing it first if stopped) and reap it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def effects(path: Path) -> list[tuple[str, int, float]]:
    """(tool, pid, time) of every call that started, in order."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        tool, pid, t = line.split()
        rows.append((tool, int(pid), float(t)))
    return rows


def wait_for_effect(path: Path, tool: str, pid: int, timeout: float) -> float:
    """When `pid` started `tool` (polls the effects file)."""
    deadline = time.monotonic() + timeout
    while True:
        for t, p, at in effects(path):
            if t == tool and p == pid:
                return at
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    raise TimeoutError(f"pid {pid} did not start {tool} within {timeout}s")


@dataclass
class TrialReport:
    """One trial's findings; `problems` lists every broken promise."""

    kind: str
    pays: int = 0  # times the non-idempotent tool ran
    hangs: int = 0  # processes that did not exit within the bound
    loser_named_owner: bool = False
    elapsed: float = 0.0  # start of the contest to the last exit
    problems: list[str] = field(default_factory=list)


def race(spec: str, run_id: str, workdir: Path, *, after_kill: bool, timeout: float = 30.0,
         hold: float = 0.1) -> TrialReport:
    """Two processes start (or resume) `run_id` at the same instant. With
    `after_kill`, a first owner is SIGKILLed inside `prepare` first, so both find
    its lease with a dead pid. Exactly one must run the run to the end, `pay` once;
    the other is refused with a message naming the winner's pid; both exit.

    `pay` waits behind a gate file that is opened once one process has exited,
    so the two always overlap however unevenly they start (a loaded machine)."""
    report = TrialReport("after kill -9" if after_kill else "fresh")
    path = workdir / f"{run_id}.effects"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if after_kill:
            first = start(spec, run_id, path, prep=30.0)
            procs.append(first)
            wait_for_effect(path, "prepare", first.pid, timeout)
            kill(first)
        t0 = time.monotonic()
        gate = workdir / f"{run_id}.gate"
        pair = [start(spec, run_id, path, hold=hold, gate=gate) for _ in range(2)]
        procs += pair
        while all(p.poll() is None for p in pair) and time.monotonic() - t0 < timeout:
            time.sleep(0.01)
        gate.touch()
        outs = [finish(p, timeout - (time.monotonic() - t0)) for p in pair]
        report.elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            kill(p)
    report.pays = sum(1 for tool, _, _ in effects(path) if tool == "pay")
    report.hangs = sum(o.returncode is None for o in outs)
    codes = sorted(o.returncode for o in outs if o.returncode is not None)
    if report.pays > 1:
        report.problems.append(f"pay ran {report.pays} times")
    if report.hangs:
        report.problems.append(f"{report.hangs} process(es) hung")
    if codes != [EXIT_DONE, EXIT_OWNED]:
        report.problems.append(f"exit codes {codes}, want one done (0) and one refused (4):\n"
                               + "\n".join(o.describe() for o in outs))
    else:
        winner, loser = sorted(outs, key=lambda o: o.returncode or 0)
        error = loser.report.get("error") or ""
        report.loser_named_owner = f"pid {winner.pid} on host" in error and "--wait" in error
        if not report.loser_named_owner:
            report.problems.append(f"the refusal does not name the owner pid {winner.pid}: "
                                   f"{error!r}")
        if report.pays != 1:
            report.problems.append(f"pay ran {report.pays} times in a finished run")
    return report


def expiry(spec: str, run_id: str, workdir: Path, *, ttl: float = 1.2,
           timeout: float = 30.0) -> TrialReport:
    """The owner is stopped (SIGSTOP: alive, so only expiry frees the run) inside
    `prepare`. A second process with --wait takes over once the lease is older
    than its ttl, and finishes. The first is continued: its heartbeat finds the
    lease lost and it must stop promptly with StaleLeaseError, writing nothing."""
    report = TrialReport("expiry")
    path = workdir / f"{run_id}.effects"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        first = start(spec, run_id, path, ttl=ttl, prep=3.0, hold=0.2)
        procs.append(first)
        wait_for_effect(path, "prepare", first.pid, timeout)
        os.kill(first.pid, signal.SIGSTOP)
        stopped = time.time()
        t0 = time.monotonic()
        second = start(spec, run_id, path, ttl=ttl, wait=4 * ttl + 5, prep=0.05, hold=0.2)
        procs.append(second)
        late = finish(second, timeout)
        took_over = wait_for_effect(path, "prepare", second.pid, 0.0) if late.returncode == 0 \
            else None
        os.kill(first.pid, signal.SIGCONT)
        resumed = time.monotonic()
        old = finish(first, min(timeout, 10.0))
        lost_in = time.monotonic() - resumed
        report.elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            kill(p)
    report.pays = sum(1 for tool, _, _ in effects(path) if tool == "pay")
    report.hangs = sum(o.returncode is None for o in (late, old))
    if late.returncode != EXIT_DONE:
        report.problems.append(f"the second process did not take over:\n{late.describe()}")
    elif took_over is not None and took_over - stopped < ttl / 2:
        report.problems.append(f"taken over {took_over - stopped:.2f}s after the owner stopped, "
                               f"before its lease (ttl {ttl}s) could expire")
    if old.returncode != EXIT_LOST or "no longer owns" not in (old.report.get("error") or ""):
        report.problems.append(f"the old owner did not stop with StaleLeaseError:\n"
                               f"{old.describe()}")
    elif lost_in > 5.0:
        report.problems.append(f"the old owner took {lost_in:.1f}s to stop")
    pays = [pid for tool, pid, _ in effects(path) if tool == "pay"]
    if pays != [second.pid]:
        report.problems.append(f"pay ran in pids {pays}, want only the new owner {second.pid}")
    if report.hangs:
        report.problems.append(f"{report.hangs} process(es) hung")
    return report
