"""The crash tests' child program, and the parent side that kills and checks it.

Child:

    python tests/durable/crash_child.py --journal SPEC --run-id R --counter FILE
        [--allow-rerun] [--width 8] [--die-in TOOL]

runs `crash_workflow` journaled. Every tool, the moment it starts, appends
"<node key> <tool>\\n" to FILE (opened O_APPEND, one write(2) per line, so the line
is in the kernel before the tool goes on and survives a SIGKILL). FILE is the
ground truth of what ran, kept apart from the journal. Tools sleep 0-20 ms so a
kill lands while calls are in flight. `--die-in TOOL` makes the first call of
TOOL SIGKILL its own process after counting: a crash at a known place.

The child prints READY just before the run starts, then one JSON line:
{"status", "value", "replayed", "error"}. Exit status: 0 done, 3 stopped by calls
in doubt (InDoubtError), 1 other failure, 2 a crash of the child itself.

Parent: `Trial` runs one crash trial (start, SIGKILL at a random instant, check
the journal against the counter, resume until done, check again); the crash
tests and benchmarks/crash_soak.py share it.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Run as a script: import this file as its package module instead, so the run's
    # entry is "tests.durable.crash_child:crash_workflow", which `plait resume` imports.
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[2]))
    from tests.durable import crash_child as _module

    _sys.exit(_module.main())

import argparse
import asyncio
import collections
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plait

COUNTER_ENV = "PLAIT_CRASH_COUNTER"
DIE_ENV = "PLAIT_CRASH_DIE_IN"
ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve()

IDEMPOTENT = frozenset({"fetch", "score", "step", "tag"})
NOT_IDEMPOTENT = frozenset({"charge", "combine", "publish"})
EXIT_DONE, EXIT_FAILED, EXIT_CRASHED, EXIT_IN_DOUBT = 0, 1, 2, 3


# --- the child: tools and workflow ------------------------------------------------------


def _count(tool: str) -> None:
    """Record that this call ran, durably for a process crash, before it goes on."""
    path = os.environ.get(COUNTER_ENV)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{plait.node_key()} {tool}\n".encode())
        finally:
            os.close(fd)
    if os.environ.get(DIE_ENV) == tool:
        os.kill(os.getpid(), signal.SIGKILL)


def _nap() -> float:
    return random.uniform(0.0, 0.020)


@plait.tool(idempotent=True)
async def fetch(i: int) -> str:
    """A read: safe to repeat."""
    _count("fetch")
    await asyncio.sleep(_nap())
    return f"doc-{i}-" + "x" * (i * 37)  # some results go to the blob table (> 256 bytes)


@plait.tool(idempotent=True)
def score(doc: str) -> int:
    """A pure computation, in a worker thread."""
    _count("score")
    time.sleep(_nap())
    return zlib.crc32(doc.encode()) % 1000


@plait.tool(idempotent=True)
async def step(x: int, k: int) -> int:
    _count("step")
    await asyncio.sleep(_nap())
    return (x * 31 + k) % 10007


@plait.tool(idempotent=True)
async def tag(label: str) -> str:
    """Called twice with the same argument: two nodes (occurrences 0 and 1)."""
    _count("tag")
    await asyncio.sleep(_nap())
    return label.upper()


@plait.tool
async def charge(account: str, amount: int) -> str:
    """A side effect: not idempotent, never run twice without allow_rerun."""
    _count("charge")
    await asyncio.sleep(_nap())
    return f"tx-{account}-{amount}"


@plait.tool
def combine(values: list[int]) -> int:
    _count("combine")
    time.sleep(_nap())
    return sum(values)


@plait.tool
async def publish(total: int, receipts: list[str], tags: list[str]) -> dict:
    _count("publish")
    await asyncio.sleep(_nap())
    return {"total": total, "receipts": receipts, "tags": tags}


@plait.workflow
async def crash_workflow(width: int) -> Any:
    """4 * width + 4 nodes: a fan-out of chains fetch -> score -> step -> charge, two
    identical tag calls, a join (combine) and a final publish."""
    docs = [fetch(i) for i in range(width)]
    scores = [score(d) for d in docs]
    steps = [step(s, i) for i, s in enumerate(scores)]
    receipts = [charge(f"acct{i % 3}", s) for i, s in enumerate(steps)]
    tags = [tag("shared"), tag("shared")]
    total = combine(steps)
    final = publish(total, receipts, tags)
    return {"total": await total, "final": await final}


def node_count(width: int) -> int:
    return 4 * width + 4


def expected_value(width: int) -> Any:
    """What an uninterrupted run returns, computed without plait."""
    steps = [
        (zlib.crc32((f"doc-{i}-" + "x" * (i * 37)).encode()) % 1000 * 31 + i) % 10007
        for i in range(width)
    ]
    receipts = [f"tx-acct{i % 3}-{s}" for i, s in enumerate(steps)]
    total = sum(steps)
    return {"total": total, "final": {"total": total, "receipts": receipts, "tags": ["SHARED"] * 2}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--journal", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--counter", required=True)
    p.add_argument("--allow-rerun", action="store_true")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--die-in", default=None)
    args = p.parse_args(argv)
    os.environ[COUNTER_ENV] = args.counter
    if args.die_in:
        os.environ[DIE_ENV] = args.die_in
    print("READY", flush=True)
    t0 = time.perf_counter()
    try:
        result = plait.run(
            crash_workflow,
            args.width,
            journal=args.journal,
            run_id=args.run_id,
            allow_rerun=args.allow_rerun,
            raise_on_error=False,
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        traceback.print_exc()
        _say({"status": "crashed", "error": f"{type(exc).__name__}: {exc}"})
        return EXIT_CRASHED
    _say(
        {
            "status": result.status,
            "value": result.value,
            "replayed": result.replayed,
            "error": None if result.error is None else str(result.error),
            "elapsed": time.perf_counter() - t0,
        }
    )
    if result.ok:
        return EXIT_DONE
    if any(isinstance(e, plait.InDoubtError) for e in result.errors.values()):
        return EXIT_IN_DOUBT
    return EXIT_FAILED


def _say(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --- the parent: one trial --------------------------------------------------------------


def child_env(counter: Path | str | None = None, die_in: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop(DIE_ENV, None)
    if counter is not None:
        env[COUNTER_ENV] = str(counter)
    if die_in:
        env[DIE_ENV] = die_in
    return env


def child_command(
    spec: str, run_id: str, counter: Path | str, *, allow_rerun: bool = False, width: int = 8,
    die_in: str | None = None,
) -> list[str]:
    cmd = [sys.executable, str(CHILD), "--journal", spec, "--run-id", run_id,
           "--counter", str(counter), "--width", str(width)]
    if allow_rerun:
        cmd.append("--allow-rerun")
    if die_in:
        cmd += ["--die-in", die_in]
    return cmd


def cli_command(*args: str) -> list[str]:
    """The `plait` command (its console script), run by this interpreter."""
    return [sys.executable, "-c", "import sys; from plait.cli import main; sys.argv[0] = 'plait'; main()",
            *args]


@dataclass
class Outcome:
    """How one child process ended."""

    returncode: int
    stdout: str
    stderr: str
    killed: bool  # by us, with SIGKILL
    elapsed: float  # from READY (or start) to exit

    @property
    def report(self) -> dict[str, Any] | None:
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        return None

    def describe(self) -> str:
        return (f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n"
                f"--- stderr\n{self.stderr[-3000:]}")


def run_child(
    cmd: list[str], env: dict[str, str], *, kill_after: float | None = None, timeout: float = 60.0
) -> Outcome:
    """Run a child; with `kill_after`, SIGKILL it that many seconds after it prints
    READY (or after it starts, for a command that never prints READY)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    killed = False
    out = b""
    try:
        t0 = time.monotonic()
        deadline = t0 + timeout
        if kill_after is not None and cmd[1] == str(CHILD):
            # Wait for READY: startup (imports) is not part of the run.
            assert proc.stdout is not None
            while b"\n" not in out:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"child did not print READY in {timeout}s: {cmd}")
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    out += chunk
            t0 = time.monotonic()
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                killed = True
        rest, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed = killed and proc.returncode == -signal.SIGKILL
    return Outcome(proc.returncode, (out + rest).decode(errors="replace"),
                   err.decode(errors="replace"), killed, elapsed)


def read_counter(path: Path) -> collections.Counter[str]:
    """How many times each node key ran; the tool of each key in `read_counter.tools`."""
    counts: collections.Counter[str] = collections.Counter()
    if not path.exists():
        return counts
    for line in path.read_bytes().split(b"\n"):
        if line:
            key, _, tool = line.decode().partition(" ")
            counts[key] += 1
            TOOLS[key] = tool
    return counts


TOOLS: dict[str, str] = {}  # node key -> tool, as seen in counter files


def refs(value: Any) -> list[str]:
    """Keys of upstream nodes in a journaled intent's canonical arguments."""
    found: list[str] = []
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            found.append(value["$ref"])
        else:
            for v in value.values():
                found += refs(v)
    elif isinstance(value, list):
        for v in value:
            found += refs(v)
    return found


class Violation(AssertionError):
    """An invariant of durable runs does not hold."""


@dataclass
class TrialStats:
    trials: int = 0
    kills: int = 0  # SIGKILLs sent
    mid_run: int = 0  # kills that left a run with calls journaled and not all results
    before_start: int = 0  # kills before the run had any intent
    after_end: int = 0  # children that finished before the kill instant
    in_doubt_seen: int = 0  # in-doubt calls found after kills (all tools)
    in_doubt_refused: int = 0  # resumes stopped by InDoubtError, as they should be
    reruns: int = 0  # calls that ran twice (in doubt, then re-run: allowed)
    cli_resumes: int = 0
    violations: list[str] = field(default_factory=list)

    def add(self, other: TrialStats) -> None:
        for name in ("trials", "kills", "mid_run", "before_start", "after_end", "in_doubt_seen",
                     "in_doubt_refused", "reruns", "cli_resumes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.violations += other.violations


class Trial:
    """One crash trial of `crash_workflow` on the journal `spec`.

    1. run the child and SIGKILL it at a random instant in [0, 1.2 * duration];
       up to `max_kills` times (later kills land in a resumed run);
    2. after each kill, before resuming, read the journal (`load`) and check:
       - a node with a result that was never in doubt ran exactly once (counter);
       - a node that ran has a result or is in doubt (intent, no result);
       - the inputs of every journaled intent have ok results;
    3. before each resume, if a non-idempotent call is in doubt: a resume without
       allow_rerun must stop with InDoubtError naming every such call, and run none
       of them; the resume then goes on with allow_rerun. Otherwise a plain resume
       must finish by itself (idempotent calls in doubt run again);
    4. at the end: the value equals an uninterrupted run's, every node has one ok
       result, nothing is in doubt, a node never ran again once it had a result,
       and only calls in doubt at a crash ran more than once.
    """

    def __init__(
        self, spec: str, run_id: str, workdir: Path, rng: random.Random, duration: float, *,
        width: int = 8, max_kills: int = 2, cli_share: float = 0.2, timeout: float = 60.0,
    ) -> None:
        self.spec = spec
        self.run_id = run_id
        self.counter = workdir / f"{run_id}.count"
        self.rng = rng
        self.duration = duration
        self.width = width
        self.max_kills = max_kills
        self.cli_share = cli_share
        self.timeout = timeout
        self.stats = TrialStats(trials=1)
        self.frozen: dict[str, int] = {}  # key -> times it ran when its result was seen
        self.doubted: collections.Counter[str] = collections.Counter()  # key -> crashes in doubt
        self.log: list[str] = []

    def fail(self, message: str) -> None:
        raise Violation(f"trial {self.run_id} on {self.spec}: {message}\n  " +
                        "\n  ".join(self.log))

    def child(self, *, allow_rerun: bool = False, kill_after: float | None = None) -> Outcome:
        cmd = child_command(self.spec, self.run_id, self.counter, allow_rerun=allow_rerun,
                            width=self.width)
        out = run_child(cmd, child_env(), kill_after=kill_after, timeout=self.timeout)
        self.log.append(f"child allow_rerun={allow_rerun} kill_after={kill_after} -> "
                        f"exit {out.returncode} killed={out.killed} {out.report}")
        return out

    def resume_cli(self, *, allow_rerun: bool = False) -> Outcome:
        self.stats.cli_resumes += 1
        args = ["resume", self.run_id, "--journal", self.spec, "--json"]
        if allow_rerun:
            args.append("--allow-rerun")
        out = run_child(cli_command(*args), child_env(self.counter), timeout=self.timeout)
        self.log.append(f"plait resume allow_rerun={allow_rerun} -> exit {out.returncode} "
                        f"{out.report}")
        return out

    def state(self) -> Any:
        journal = plait_journal(self.spec)
        try:
            if journal.get_run(self.run_id) is None:
                return None
            return journal.load(self.run_id)
        finally:
            journal.close()

    def check_crash(self) -> Any:
        """The invariants right after a kill, before anything resumes."""
        state = self.state()
        counts = read_counter(self.counter)
        if state is None:
            if counts:
                self.fail(f"calls ran but the run is not in the journal: {dict(counts)}")
            self.stats.before_start += 1
            self.log.append("crash: no run in the journal yet")
            return None
        doubt = state.in_doubt
        for key, result in state.results.items():
            if key not in state.intents:
                self.fail(f"result without intent: {key}")
            if not result.ok:
                # Only a call refused as in doubt fails (it is then re-run with allow_rerun).
                if not (result.error or "").startswith("InDoubtError"):
                    self.fail(f"a failed result, but no tool fails: {key} {result.error}")
                continue
            if key not in self.frozen:
                self.frozen[key] = counts[key]
                if key not in self.doubted and counts[key] != 1:
                    self.fail(f"node {key} ({TOOLS.get(key)}) has a result but ran "
                              f"{counts[key]} times")
            elif counts[key] != self.frozen[key]:
                self.fail(f"node {key} ({TOOLS.get(key)}) ran again after its result was "
                          f"journaled ({self.frozen[key]} -> {counts[key]})")
        for key, n in counts.items():
            if key not in state.results and key not in state.intents:
                self.fail(f"node {key} ({TOOLS.get(key)}) ran {n} time(s) but is neither "
                          "journaled with a result nor in doubt (no intent before the call)")
        for key, intent in state.intents.items():
            for parent in refs(intent.arguments):
                r = state.results.get(parent)
                if r is None or not r.ok:
                    self.fail(f"intent {key} ({intent.tool}) is durable but its input {parent} "
                              "has no result: results must be committed before dependent intents")
        self.doubted.update(doubt)
        self.stats.in_doubt_seen += len(doubt)
        if not state.intents:
            self.stats.before_start += 1
        elif len(state.results) < node_count(self.width):
            self.stats.mid_run += 1
        self.log.append(f"crash: {len(state.intents)} intents, {len(state.results)} results, "
                        f"in doubt {[state.intents[k].tool for k in doubt]}")
        return state

    def check_refusal(self, state: Any, risky: list[str], use_cli: bool) -> None:
        """A resume without allow_rerun stops on calls in doubt and runs none of them."""
        before = read_counter(self.counter)
        out = self.resume_cli() if use_cli else self.child()
        want = EXIT_FAILED if use_cli else EXIT_IN_DOUBT
        if out.returncode != want:
            self.fail(f"resume with calls in doubt {[state.intents[k].tool for k in risky]} "
                      f"should stop with InDoubtError (exit {want}); got {out.describe()}")
        text = out.stdout + out.stderr
        if "InDoubtError" not in text or "allow_rerun" not in text:
            self.fail(f"the in-doubt stop does not say InDoubtError / allow_rerun:\n{text}")
        for k in risky:
            if k[:12] not in text:
                self.fail(f"the in-doubt message does not list {k[:12]} "
                          f"({state.intents[k].tool}):\n{text}")
        after = read_counter(self.counter)
        for k in risky:
            if after[k] != before[k]:
                self.fail(f"in-doubt call {k} ({state.intents[k].tool}) ran again without "
                          "allow_rerun")
        self.stats.in_doubt_refused += 1

    def run(self) -> TrialStats:
        kills = self.rng.randint(1, self.max_kills)
        state = None
        for attempt in range(kills + 1):
            risky = [] if state is None else [
                k for k in state.in_doubt if state.intents[k].tool in NOT_IDEMPOTENT
            ]
            use_cli = (attempt == kills and state is not None
                       and self.rng.random() < self.cli_share)
            if risky:
                self.check_refusal(state, risky, use_cli)
            allow = bool(risky) or (attempt > 0 and self.rng.random() < 0.3)
            if attempt == kills:  # the last resume: runs to the end
                out = self.resume_cli(allow_rerun=allow) if use_cli else self.child(
                    allow_rerun=allow)
                if out.returncode != EXIT_DONE:
                    self.fail(f"the final resume did not finish: {out.describe()}")
                break
            delay = self.rng.uniform(0.0, 1.2 * self.duration)
            out = self.child(allow_rerun=allow, kill_after=delay)
            if not out.killed:
                if out.returncode != EXIT_DONE:
                    self.fail(f"child failed: {out.describe()}")
                self.stats.after_end += 1
                break
            self.stats.kills += 1
            state = self.check_crash()
        self.check_final(out)
        return self.stats

    def check_final(self, out: Outcome) -> None:
        report = out.report
        if report is None or report.get("value") != expected_value(self.width):
            self.fail(f"final value {report and report.get('value')!r} != "
                      f"{expected_value(self.width)!r}")
        state = self.state()
        counts = read_counter(self.counter)
        if state.run.status != "done":
            self.fail(f"run status {state.run.status!r} after a finished resume")
        if state.in_doubt:
            self.fail(f"calls still in doubt after a finished run: {state.in_doubt}")
        if len(state.results) != node_count(self.width) or not all(
            r.ok for r in state.results.values()
        ):
            self.fail(f"{len(state.results)} results, want {node_count(self.width)} ok ones")
        if set(counts) - set(state.results):
            self.fail(f"keys ran that are not nodes of the run (unstable node_key?): "
                      f"{set(counts) - set(state.results)}")
        for key in state.results:
            n = counts[key]
            tool = state.intents[key].tool
            if n < 1:
                self.fail(f"node {key} ({tool}) has a result but never ran")
            if key in self.frozen and n != self.frozen[key]:
                self.fail(f"node {key} ({tool}) ran again after its result was journaled "
                          f"({self.frozen[key]} -> {n})")
            if n > 1 + self.doubted[key]:
                self.fail(f"node {key} ({tool}) ran {n} times but was in doubt at only "
                          f"{self.doubted[key]} crash(es)")
            self.stats.reruns += n - 1


def plait_journal(spec: str) -> Any:
    from plait.journal import open_journal

    return open_journal(spec)


def calibrate(spec: str, workdir: Path, run_id: str, width: int = 8) -> float:
    """Seconds an uninterrupted run takes (READY to exit), checking its value."""
    counter = workdir / f"{run_id}.count"
    out = run_child(child_command(spec, run_id, counter, width=width), child_env(),
                    kill_after=60.0)
    report = out.report
    if out.returncode != EXIT_DONE or report is None:
        raise AssertionError(f"uninterrupted run failed: {out.describe()}")
    if report["value"] != expected_value(width):
        raise AssertionError(f"uninterrupted run: {report['value']} != {expected_value(width)}")
    counts = read_counter(counter)
    if len(counts) != node_count(width) or set(counts.values()) != {1}:
        raise AssertionError(f"uninterrupted run: counter {counts}")
    return float(report["elapsed"])


def run_trials(
    spec: str, trials: int, workdir: Path, *, seed: int, duration: float, parallel: int = 2,
    prefix: str = "t", progress: Callable[[int, TrialStats], None] | None = None,
    **options: Any,
) -> TrialStats:
    """`trials` independent trials, `parallel` at a time; trial i uses the RNG seeded
    with (seed, i), so a failing trial can be re-run alone. Raises the first Violation
    (after the running trials end) unless options say keep_going=True. `progress`
    is called with each trial's number and stats as it ends (in order)."""
    from concurrent.futures import ThreadPoolExecutor

    keep_going = options.pop("keep_going", False)
    total = TrialStats()

    def one(i: int) -> TrialStats:
        rng = random.Random(f"{seed}-{i}")
        trial = Trial(spec, f"{prefix}{seed}-{i}", workdir, rng, duration, **options)
        try:
            return trial.run()
        except Violation as exc:
            if not keep_going:
                raise
            stats = trial.stats
            stats.violations.append(str(exc))
            return stats

    with ThreadPoolExecutor(parallel) as pool:
        for i, stats in enumerate(pool.map(one, range(trials))):
            total.add(stats)
            if progress is not None:
                progress(i, stats)
    return total
