"""Crash soak: the crash tests' trial, by the hundred.

    python benchmarks/crash_soak.py --trials 500 [--journal sqlite|postgres]
        [--dsn postgresql://postgres@127.0.0.1:5432/test] [--seed 1] [--parallel 2]

Each trial runs `crash_workflow` (36 nodes: fan-out, chains, a join; idempotent
and non-idempotent tools sleeping 0-20 ms) in a child process, SIGKILLs it at a
random instant (up to twice per trial, so some kills land in a resumed run),
checks the journal against an execution counter kept apart from it, and resumes
to the end (see tests/durable/crash_child.py, `Trial`). Prints a line per trial on
stderr as it ends, then a summary table; violations should be 0. Exit status 1
when any trial found a violation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.durable import crash_child as cc  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--journal", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL server (a fresh schema is used)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--parallel", type=int, default=2, help="trials at a time")
    p.add_argument("--max-kills", type=int, default=2, help="kills per trial, at most")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="plait-soak-") as tmp:
        workdir = Path(tmp)
        schema = None
        if args.journal == "sqlite":
            spec = str(workdir / "runs.db")
        else:
            schema = f"plait_soak_{uuid.uuid4().hex[:10]}"
            spec = f"{args.dsn}{'&' if '?' in args.dsn else '?'}schema={schema}"
        try:
            duration = sorted(
                cc.calibrate(spec, workdir, f"calib-{i}") for i in range(3)
            )[1]
            t0 = time.perf_counter()
            print(f"{args.trials} trials on {args.journal}, {args.parallel} at a time; an "
                  f"uninterrupted run takes {duration * 1000:.0f} ms", file=sys.stderr, flush=True)
            violations = 0

            def progress(i: int, trial: cc.TrialStats) -> None:
                # One line per trial on stderr: a soak of hundreds takes many minutes.
                nonlocal violations
                violations += len(trial.violations)
                print(f"[{time.perf_counter() - t0:7.1f}s] trial {i + 1:>4}/{args.trials}: "
                      f"{trial.kills} kill(s), {trial.in_doubt_seen} in doubt, "
                      f"{'VIOLATION' if trial.violations else 'ok'} "
                      f"({violations} violation(s) so far)", file=sys.stderr, flush=True)

            stats = cc.run_trials(
                spec, args.trials, workdir, seed=args.seed, duration=duration,
                parallel=args.parallel, max_kills=args.max_kills, keep_going=True,
                prefix="soak", progress=progress,
            )
            wall = time.perf_counter() - t0
        finally:
            if schema is not None:
                import psycopg

                with psycopg.connect(args.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    rows = [
        ("journal", args.journal),
        ("trials", stats.trials),
        ("uninterrupted run (median of 3)", f"{duration * 1000:.0f} ms"),
        ("SIGKILLs sent", stats.kills),
        ("kills mid-run (calls journaled, not all results)", stats.mid_run),
        ("kills before the first intent", stats.before_start),
        ("children done before their kill instant", stats.after_end),
        ("calls in doubt seen after kills", stats.in_doubt_seen),
        ("resumes refused on non-idempotent calls in doubt", stats.in_doubt_refused),
        ("calls run twice (in doubt, re-run as allowed)", stats.reruns),
        ("resumes through `plait resume`", stats.cli_resumes),
        ("violations", len(stats.violations)),
        ("wall time", f"{wall:.1f} s ({wall / max(stats.trials, 1):.2f} s/trial, "
                      f"{args.parallel} at a time)"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\ncrash soak, seed {args.seed}")
    print("-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 24))
    for v in stats.violations[:5]:
        print("\nVIOLATION:", v)
    return 1 if stats.violations else 0


if __name__ == "__main__":
    sys.exit(main())
