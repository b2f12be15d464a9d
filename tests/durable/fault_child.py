"""The fault tests' child program, and the parent side that injects journal faults.

Child:

    python tests/durable/fault_child.py --journal SPEC --run-id R --counter FILE
        [--allow-rerun] [--width 6] [--depth 10] [--busy-timeout S]

runs `fault_workflow` journaled: `width` chains of `depth` idempotent `hop` calls
(30-70 ms each, so a run lasts about a second), a non-idempotent `pay` per chain
and a `total`. Every call, the moment it starts, appends "<node key> <tool>" to
FILE (O_APPEND, one write(2)): the ground truth of what ran, kept apart from the
journal. `--busy-timeout` opens a SQLite journal with that lock wait (the tests
use a short one; the writer's retry bound comes from PLAIT_JOURNAL_RETRY_SECONDS).
The child prints READY, then one JSON line {"status", "value", "error",
"elapsed"}. Exit status: 0 done, 1 failed nodes, 3 stopped by calls in doubt,
4 the run raised (a journal failure), 2 anything else.

Parent: `FaultTrial` runs one trial: start the child, inject a fault at a random
instant (another process holding SQLite's write lock, a full file system, the
PostgreSQL backend terminated), check that the child ends in time with a clear
error (or completes), check the journal against the counter, then resume and
check that every call finished and none that had finished ran again. The fault
tests and benchmarks/fault_soak.py share it.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Import this file as its package module, so the run's entry is importable.
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[2]))
    from tests.durable import fault_child as _module

    _sys.exit(_module.main())

import argparse
import asyncio
import collections
import errno
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plait

COUNTER_ENV = "PLAIT_FAULT_COUNTER"
ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve()
EXIT_DONE, EXIT_FAILED, EXIT_CRASHED, EXIT_IN_DOUBT, EXIT_RAISED = 0, 1, 2, 3, 4
KINDS = ("sqlite-lock", "sqlite-full", "postgres-kill")


# --- the child ----------------------------------------------------------------------


def _count(tool: str) -> None:
    fd = os.open(os.environ[COUNTER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{plait.node_key()} {tool}\n".encode())
    finally:
        os.close(fd)


@plait.tool(idempotent=True)
async def hop(x: int, k: int) -> int:
    _count("hop")
    await asyncio.sleep(random.uniform(0.03, 0.07))
    return (x * 31 + k) % 10007


@plait.tool
async def pay(x: int) -> str:
    """A side effect: never run twice without allow_rerun."""
    _count("pay")
    await asyncio.sleep(random.uniform(0.01, 0.03))
    return f"tx-{x}-" + "r" * 300  # a result in the blob table


@plait.tool
def total(values: list[int]) -> int:
    _count("total")
    return sum(values)


@plait.workflow
async def fault_workflow(width: int, depth: int) -> Any:
    ends = []
    for i in range(width):
        x: Any = hop(i, 0)
        for k in range(1, depth):
            x = hop(x, k)
        ends.append(x)
    receipts = [pay(x) for x in ends]
    t = total(ends)
    return {"total": await t, "receipts": [await r for r in receipts]}


def node_count(width: int, depth: int) -> int:
    return width * depth + width + 1


def expected_value(width: int, depth: int) -> Any:
    ends = []
    for i in range(width):
        x = i
        for k in range(depth):
            x = (x * 31 + k) % 10007
        ends.append(x)
    return {"total": sum(ends), "receipts": [f"tx-{x}-" + "r" * 300 for x in ends]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--journal", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--counter", required=True)
    p.add_argument("--allow-rerun", action="store_true")
    p.add_argument("--width", type=int, default=6)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--busy-timeout", type=float, default=None)
    args = p.parse_args(argv)
    os.environ[COUNTER_ENV] = args.counter
    journal: Any = args.journal
    print("READY", flush=True)
    t0 = time.perf_counter()
    try:
        if args.busy_timeout is not None and "://" not in journal:
            from plait.journal import SQLiteJournal

            journal = SQLiteJournal(journal, timeout=args.busy_timeout)
        try:
            result = plait.run(fault_workflow, args.width, args.depth, journal=journal,
                               run_id=args.run_id, allow_rerun=args.allow_rerun,
                               raise_on_error=False)
        finally:
            if not isinstance(journal, str):
                journal.close()
    except plait.PlaitError as exc:
        _say({"status": "raised", "error": f"{type(exc).__name__}: {exc}",
              "elapsed": time.perf_counter() - t0})
        return EXIT_RAISED
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        import traceback

        traceback.print_exc()
        _say({"status": "crashed", "error": f"{type(exc).__name__}: {exc}"})
        return EXIT_CRASHED
    _say({"status": result.status, "value": result.value,
          "error": None if result.error is None else str(result.error),
          "elapsed": time.perf_counter() - t0})
    if result.ok:
        return EXIT_DONE
    if any(isinstance(e, plait.InDoubtError) for e in result.errors.values()):
        return EXIT_IN_DOUBT
    return EXIT_FAILED


def _say(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --- the parent: processes --------------------------------------------------------------


def child_env(retry: float | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("PLAIT_JOURNAL_RETRY_SECONDS", None)
    if retry is not None:
        env["PLAIT_JOURNAL_RETRY_SECONDS"] = str(retry)
    return env


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    ended_at: float  # time.monotonic() when the child had exited

    @property
    def report(self) -> dict[str, Any] | None:
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return None

    def describe(self) -> str:
        return (f"exit {self.returncode}\n--- stdout\n{self.stdout[-2000:]}\n"
                f"--- stderr\n{self.stderr[-2000:]}")


class Child:
    """A child process; `ready()` waits for its READY line."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=ROOT)
        self._out = b""

    def ready(self, timeout: float = 30.0) -> float:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"child did not print READY in {timeout}s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                self._out += chunk
        return time.monotonic()

    def wait(self, timeout: float) -> Outcome:
        """Wait for the exit; a child still running after `timeout` is killed (by pid)."""
        try:
            rest, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rest, err = self.proc.communicate()
        ended = time.monotonic()
        return Outcome(self.proc.returncode, (self._out + rest).decode(errors="replace"),
                       err.decode(errors="replace"), ended)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)


def child_command(spec: str, run_id: str, counter: Path, *, allow_rerun: bool = False,
                  width: int = 6, depth: int = 10, busy_timeout: float | None = None,
                  prefix: list[str] | None = None) -> list[str]:
    cmd = [*(prefix or []), sys.executable, str(CHILD), "--journal", spec, "--run-id", run_id,
           "--counter", str(counter), "--width", str(width), "--depth", str(depth)]
    if allow_rerun:
        cmd.append("--allow-rerun")
    if busy_timeout is not None:
        cmd += ["--busy-timeout", str(busy_timeout)]
    return cmd


def started(path: Path) -> int:
    """How many calls have started (lines in the counter file)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def read_counter(path: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    if path.exists():
        for line in path.read_bytes().split(b"\n"):
            if line:
                counts[line.decode().partition(" ")[0]] += 1
    return counts


# --- the parent: faults -----------------------------------------------------------------


class Fault:
    """One fault on one journal: `inject()` at the random instant, `clear()` later."""

    def __str__(self) -> str:
        return type(self).__name__

    spec: str  # the journal, as the child names it
    prefix: list[str] = []  # runs the child where the journal is (a mount namespace)
    hit = True  # False: the fault found nothing to hit (the child had let go)

    def inject(self) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        pass

    def close(self) -> None:
        self.clear()


_LOCKER = (
    "import sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "print('LOCKED', flush=True)\n"
    "sys.stdin.read()\n"  # held until the parent closes stdin (or kills us)
)


class SQLiteLock(Fault):
    """Another process takes SQLite's write lock (BEGIN IMMEDIATE) and holds it."""

    def __init__(self, path: Path):
        self.spec = str(path)
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None

    def inject(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _LOCKER, str(self.path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"LOCKED":
            raise RuntimeError(f"the locker did not take the lock: {line!r}")

    def clear(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()  # the locker exits, its transaction rolls back
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class FullDisk(Fault):
    """A 2 MB tmpfs in a private mount namespace (nothing outside it is touched),
    held by a `sleep` that the children join with nsenter; the fault fills it."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "fs"
        self.dir.mkdir()
        self.spec = str(self.dir / "runs.db")
        script = (f"mount -t tmpfs -o size=2m tmpfs {self.dir} && echo MOUNTED "
                  "&& exec sleep 600")
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                        "sh", "-c", script], stdout=subprocess.PIPE)
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line.strip() != b"MOUNTED":
            self.holder.kill()
            self.holder.wait()
            raise RuntimeError("could not mount a tmpfs in a private mount namespace")
        self.prefix = ["nsenter", "--target", str(self.holder.pid), "--mount", "--"]
        self.fill = Path(f"/proc/{self.holder.pid}/root") / str(self.dir).lstrip("/") / "fill"

    def inject(self) -> None:
        chunk = b"\0" * 65536
        with open(self.fill, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
            try:  # the last few free bytes too
                while True:
                    f.write(b"\0" * 512)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def clear(self) -> None:
        try:
            self.fill.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self.clear()
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait()


class PostgresKill(Fault):
    """pg_terminate_backend on the child's connections only: they carry an
    application_name of their own, given in the DSN."""

    def __init__(self, dsn: str):
        self.app = f"plait_fault_{uuid.uuid4().hex[:10]}"
        self.spec = f"{dsn}{'&' if '?' in dsn else '?'}application_name={self.app}"
        self.admin = dsn.split("?")[0]
        self.killed = 0

    def __str__(self) -> str:
        return f"{self.killed} backend(s) terminated"

    def inject(self) -> None:
        """Terminate the child's backends; if it has none yet (still connecting), try
        again for up to 2 s, so the fault hits the run rather than nothing."""
        import psycopg

        deadline = time.monotonic() + 2.0
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            while True:
                rows = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()", (self.app,)
                ).fetchall()
                self.killed += len(rows)
                self.hit = bool(rows)
                if rows or time.monotonic() > deadline:
                    return
                time.sleep(0.01)


# --- the parent: one trial --------------------------------------------------------------


class Violation(AssertionError):
    """A promise under faults does not hold."""


@dataclass
class TrialResult:
    kind: str
    outcome: str  # "completed" | "ended" (a clear journal error) | "before" (ended pre-fault)
    seconds_to_end: float  # from the fault to the child's exit
    resumed_clean: bool
    reruns_of_finished: int  # finished calls run again (must be 0)
    error: str = ""


@dataclass
class FaultTrial:
    """One trial: `kind` of fault at a random instant of a run, then a resume."""

    kind: str
    fault: Fault
    workdir: Path
    rng: random.Random
    retry: float | None = None  # the writer's bound (None: plait's default)
    busy_timeout: float | None = None  # SQLite lock wait (None: plait's default)
    hold: float | None = None  # seconds the fault lasts (None: until the child ends)
    width: int = 6
    depth: int = 10
    deadline: float = 10.0  # the run must end this long after the fault
    log: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        raise Violation(f"{self.kind} trial: {message}\n  " + "\n  ".join(self.log))

    def run(self) -> TrialResult:
        run_id = f"f{uuid.uuid4().hex[:10]}"
        counter = self.workdir / f"{run_id}.count"
        env = child_env(self.retry)
        cmd = child_command(self.fault.spec, run_id, counter, width=self.width,
                            depth=self.depth, busy_timeout=self.busy_timeout,
                            prefix=self.fault.prefix)
        child = Child(cmd, env)
        timer: threading.Timer | None = None
        try:
            t_ready = child.ready()
            # The instant: once k calls have started, k random (0: while the journal
            # opens), so the fault lands in the run whatever the machine's speed.
            k = self.rng.randrange(node_count(self.width, self.depth))
            while (child.proc.poll() is None and time.monotonic() < t_ready + 30
                   and started(counter) < k):
                time.sleep(0.002)
            ended_before = child.proc.poll() is not None
            t0 = time.monotonic()
            self.fault.inject()
            t_fault = time.monotonic()  # in effect from now
            ended_before = ended_before or not self.fault.hit
            self.log.append(f"fault after {k} calls, {t0 - t_ready:.2f}s "
                            f"({t_fault - t0:.2f}s to inject: {self.fault}); hold {self.hold}")
            if self.hold is not None:
                timer = threading.Timer(self.hold, self.fault.clear)
                timer.start()
            out = child.wait(self.deadline + 5.0)
        finally:
            child.kill()
            if timer is not None:
                timer.cancel()
            self.fault.clear()
        took = out.ended_at - t_fault
        report = out.report
        self.log.append(f"child -> exit {out.returncode} after {took:.2f}s: {report}")
        if report is None:
            self.fail(f"the child printed no report: {out.describe()}")
        assert report is not None
        if took > self.deadline:
            self.fail(f"the run ended {took:.1f}s after the fault (> {self.deadline}s)")
        if out.returncode == EXIT_DONE:
            outcome = "before" if ended_before else "completed"
            if report["value"] != expected_value(self.width, self.depth):
                self.fail(f"wrong value {report['value']}")
        elif out.returncode == EXIT_RAISED:
            outcome = "ended"
            self.check_error(report["error"], run_id)
        else:
            self.fail(f"unexpected exit: {out.describe()}")
        ran_before = read_counter(counter)
        state = load(self.fault, run_id)
        finished = set()
        if state is not None:
            finished = set(state.ok)
            for key in finished:
                if ran_before[key] != 1:
                    self.fail(f"node {key} has a result but ran {ran_before[key]} times")
            unexplained = set(ran_before) - set(state.intents)
            if unexplained:
                self.fail(f"calls ran without an intent: {sorted(unexplained)}")
        resumed = self.resume(run_id, counter)
        ran_after = read_counter(counter)
        reruns = sum(1 for k in finished if ran_after[k] != ran_before[k])
        if reruns:
            self.fail(f"{reruns} finished calls ran again on resume")
        doubt = set(ran_before) - finished
        again = [k for k in ran_after if ran_after[k] > 1 and k not in doubt]
        if again:
            self.fail(f"calls not in doubt ran twice: {again}")
        return TrialResult(self.kind, outcome, took, resumed, reruns,
                           report.get("error") or "")

    def check_error(self, error: str, run_id: str) -> None:
        """A clear error: a JournalError naming the journal and how to resume."""
        where = "postgresql://" if self.kind == "postgres-kill" else self.fault.spec
        if not error.split(":")[0].endswith("JournalError") or where not in error:
            self.fail(f"unclear error (want a JournalError naming {where}): {error}")
        if "\n" in error:
            self.fail(f"the error is not one line: {error!r}")
        # The run's own errors say how to resume; one opening the journal need not.
        stopped = f"run {run_id} stopped" in error or f"run {run_id} ended" in error
        if stopped and f"plait resume {run_id}" not in error:
            self.fail(f"the error does not say how to resume: {error}")

    def resume(self, run_id: str, counter: Path) -> bool:
        cmd = child_command(self.fault.spec, run_id, counter, width=self.width, depth=self.depth,
                            allow_rerun=True, busy_timeout=self.busy_timeout,
                            prefix=self.fault.prefix)
        child = Child(cmd, child_env(self.retry))
        try:
            child.ready()
            out = child.wait(30.0)
        finally:
            child.kill()
        self.log.append(f"resume -> exit {out.returncode}: {out.report}")
        if out.returncode != EXIT_DONE:
            self.fail(f"the resume did not finish: {out.describe()}")
        assert out.report is not None
        if out.report["value"] != expected_value(self.width, self.depth):
            self.fail(f"resume: wrong value {out.report['value']}")
        state = load(self.fault, run_id)
        assert state is not None
        if state.status != "done" or state.in_doubt:
            self.fail(f"after the resume: status {state.status}, in doubt {state.in_doubt}")
        n = node_count(self.width, self.depth)
        if state.results != n or len(state.ok) != n:
            self.fail(f"after the resume: {state.results} results, {len(state.ok)} ok")
        return True


@dataclass(frozen=True)
class State:
    """What the tests read of a run in the journal."""

    status: str
    ok: frozenset[str]  # keys with an ok result
    intents: frozenset[str]
    in_doubt: tuple[str, ...]
    results: int


def read_state(spec: str, run_id: str) -> State | None:
    from plait.journal import open_journal

    journal = open_journal(spec)
    try:
        if journal.get_run(run_id) is None:
            return None
        st = journal.load(run_id)
    finally:
        journal.close()
    return State(st.run.status, frozenset(k for k, r in st.results.items() if r.ok),
                 frozenset(st.intents), tuple(st.in_doubt), len(st.results))


def load(fault: Fault, run_id: str) -> State | None:
    """The run's journal state (None if the run was never created), read where it is.
    A journal in the fault's mount namespace is copied out first (the file and its
    WAL; no process has it open): SQLite resolves /proc/PID/root to our own root."""
    if not isinstance(fault, FullDisk):
        return read_state(fault.spec, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", "-wal"):
            source = fault.fill.parent / f"runs.db{suffix}"
            if source.exists():
                shutil.copyfile(source, Path(tmp) / f"runs.db{suffix}")
        return read_state(str(Path(tmp) / "runs.db"), run_id)
