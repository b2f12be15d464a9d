"""Fault soak: the fault tests' trial by the fifty, with plait's default bounds.

    python benchmarks/fault_soak.py [--trials 50] [--kinds sqlite-lock,sqlite-full,postgres-kill]
        [--dsn postgresql://postgres@127.0.0.1:5432/test] [--seed 1] [--parallel 2]

Each trial runs `fault_workflow` (6 chains of 10 idempotent calls, a
non-idempotent call per chain, a join; about a second) journaled in a child
process and injects one journal fault once a random number of its calls have
started (0: while the journal opens; see
tests/durable/fault_child.py, `FaultTrial`):

  sqlite-lock    another process takes SQLite's write lock (BEGIN IMMEDIATE) and
                 holds it 0.5 s (under the busy timeout), 3 s (past it, within the
                 writer's retry bound) or until the child has ended
  sqlite-full    the 2 MB tmpfs holding the journal (a private mount namespace:
                 needs root and `unshare`) is filled, and freed after the same holds
  postgres-kill  pg_terminate_backend on the child's connections (a schema and an
                 application_name of its own)

The child must complete, or end within 10 s of the fault with a one-line
JournalError naming the journal (and the resume); then a resume (allow_rerun)
must finish the run with every call journaled once, and no call that had
finished before the fault may run again. Children use plait's defaults: a 2 s
SQLite busy timeout and the writer's 5 s retry bound. Prints a progress line per
trial and a table with targets met/MISSED; exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.durable import fault_child as fc  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
HOLDS = (0.5, 3.0, None)  # under the busy timeout, within the retry bound, to the end
DEADLINE = 10.0


def soak(kind: str, trials: int, seed: int, parallel: int, dsn: str, workdir: Path) -> dict:
    schema = f"plait_fsoak_{uuid.uuid4().hex[:10]}"
    pg = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"

    def make(d: Path) -> fc.Fault:
        d.mkdir(parents=True, exist_ok=True)
        if kind == "sqlite-lock":
            return fc.SQLiteLock(d / "runs.db")
        if kind == "sqlite-full":
            return fc.FullDisk(d)
        return fc.PostgresKill(pg)

    done = 0
    lock = threading.Lock()
    results: list[fc.TrialResult] = []
    violations: list[str] = []
    t0 = time.perf_counter()

    def one(i: int) -> None:
        nonlocal done
        work = workdir / kind / f"t{i}"
        fault = make(work)
        hold = None if kind == "postgres-kill" else HOLDS[i % len(HOLDS)]
        trial = fc.FaultTrial(kind, fault, work, random.Random(f"{seed}-{kind}-{i}"),
                              hold=hold, deadline=DEADLINE)
        try:
            r = trial.run()
            line = f"{r.outcome:9} {r.seconds_to_end:5.2f}s to end"
            with lock:
                results.append(r)
        except fc.Violation as exc:
            line = f"VIOLATION {str(exc).splitlines()[0][:150]}"
            with lock:
                violations.append(str(exc))
        finally:
            fault.close()
        with lock:
            done += 1
            print(f"  [{kind} {done}/{trials}] hold {hold}: {line}", flush=True)

    try:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, range(trials)))
    finally:
        if kind == "postgres-kill":
            import psycopg

            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {
        "kind": kind,
        "trials": trials,
        "in_time": sum(r.seconds_to_end <= DEADLINE for r in results),
        "max_end": max((r.seconds_to_end for r in results), default=float("nan")),
        "clean": sum(r.resumed_clean for r in results),
        "reruns": sum(r.reruns_of_finished for r in results),
        "completed": sum(r.outcome == "completed" for r in results),
        "ended": sum(r.outcome == "ended" for r in results),
        "before": sum(r.outcome == "before" for r in results),
        "violations": violations,
        "wall": time.perf_counter() - t0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=50, help="per fault kind")
    p.add_argument("--kinds", default=",".join(fc.KINDS))
    p.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL server (a fresh schema)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--parallel", type=int, default=2, help="trials at a time")
    args = p.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(fc.KINDS)
    if unknown:
        p.error(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(fc.KINDS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="plait-fault-soak-") as tmp:
        for kind in kinds:
            print(f"{kind}: {args.trials} trials, {args.parallel} at a time", flush=True)
            rows.append(soak(kind, args.trials, args.seed, args.parallel, args.dsn, Path(tmp)))

    print(f"\nfault soak, seed {args.seed}: the run ends within {DEADLINE:g} s of the fault "
          "(or completes), the resume finishes, no finished call runs again")
    head = (f"{'fault':<14}{'trials':>7}{'in time':>9}{'max s':>7}{'resumes ok':>11}"
            f"{'re-run':>8}  {'completed/ended/before':<23}{'target':>7}")
    print(head)
    print("-" * len(head))
    missed = False
    for r in rows:
        ok = (r["in_time"] == r["trials"] and r["clean"] == r["trials"] and r["reruns"] == 0
              and not r["violations"])
        missed |= not ok
        split = f"{r['completed']}/{r['ended']}/{r['before']}"
        print(f"{r['kind']:<14}{r['trials']:>7}{r['in_time']:>9}{r['max_end']:>7.2f}"
              f"{r['clean']:>11}{r['reruns']:>8}  {split:<23}{'met' if ok else 'MISSED':>7}")
    print("-" * len(head))
    for r in rows:
        print(f"{r['kind']}: wall {r['wall']:.0f} s")
        for v in r["violations"][:3]:
            print(f"\nVIOLATION ({r['kind']}): {v}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
