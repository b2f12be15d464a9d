"""Ownership soak: two real processes on one run id, by the score, per backend.

    python benchmarks/ownership_soak.py [--trials 20] [--expiry 5]
        [--journal sqlite,postgres] [--dsn postgresql://postgres@127.0.0.1:5432/test]

Per backend: `--trials` races on a fresh run id and `--trials` races after a
kill -9 of a first owner (two processes start/resume at the same instant), and
`--expiry` takeovers of an owner stopped with SIGSTOP (alive, so only its lease's
expiry frees the run; once continued it must stop with StaleLeaseError). The
workflow's `pay` tool is not idempotent and appends to a side-effect file, the
ground truth of how often it ran. See tests/durable/owner_child.py.

Target (issue 9): >= 20 trials per backend of each race; no double execution, no
hang, every loser's message names the owner, every expiry trial takes over and
stops the old owner. Prints progress, then a table; exit status 1 if MISSED.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.durable import owner_child as oc  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_TRIALS = 20


def _drop(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def soak(backend: str, args: argparse.Namespace, workdir: Path) -> list[oc.TrialReport]:
    schema = None
    if backend == "sqlite":
        spec = str(workdir / f"runs-{uuid.uuid4().hex[:6]}.db")
    else:
        schema = f"plait_own_{uuid.uuid4().hex[:10]}"
        spec = f"{args.dsn}{'&' if '?' in args.dsn else '?'}schema={schema}"
    plan = ([("fresh", i) for i in range(args.trials)]
            + [("after kill -9", i) for i in range(args.trials)]
            + [("expiry", i) for i in range(args.expiry)])
    reports = []
    try:
        for n, (kind, i) in enumerate(plan, 1):
            run_id = f"{kind.split()[0]}-{i}-{uuid.uuid4().hex[:6]}"
            if kind == "expiry":
                r = oc.expiry(spec, run_id, workdir, ttl=args.ttl)
            else:
                r = oc.race(spec, run_id, workdir, after_kill=kind != "fresh")
            reports.append(r)
            state = "ok" if not r.problems else "PROBLEM: " + r.problems[0].splitlines()[0]
            print(f"[{backend} {n:>3}/{len(plan)}] {kind:<14} {r.elapsed:5.2f}s  {state}",
                  flush=True)
    finally:
        if schema is not None:
            _drop(args.dsn, schema)
    return reports


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=TARGET_TRIALS,
                   help="races per kind (fresh, after kill -9) per backend")
    p.add_argument("--expiry", type=int, default=5, help="expiry takeovers per backend")
    p.add_argument("--ttl", type=float, default=1.2, help="lease ttl in the expiry trials")
    p.add_argument("--journal", default="sqlite,postgres", help="backends, comma-separated")
    p.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL server (a fresh schema is used)")
    args = p.parse_args()
    backends = [b.strip() for b in args.journal.split(",") if b.strip()]

    results: dict[str, list[oc.TrialReport]] = {}
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="plait-own-") as tmp:
        for backend in backends:
            t0 = time.perf_counter()
            results[backend] = soak(backend, args, Path(tmp))
            wall[backend] = time.perf_counter() - t0

    print("\nownership soak: two processes on one run id")
    header = (f"{'backend':<9} {'trial':<14} {'trials':>6} {'double exec':>11} {'hangs':>5} "
              f"{'loser names owner':>17} {'problems':>8} {'max time':>8}")
    print(header)
    print("-" * len(header))
    met = True
    for backend, reports in results.items():
        by_kind: dict[str, list[oc.TrialReport]] = defaultdict(list)
        for r in reports:
            by_kind[r.kind].append(r)
        for kind, rs in by_kind.items():
            doubles = sum(r.pays > 1 for r in rs)
            hangs = sum(r.hangs for r in rs)
            named = "-" if kind == "expiry" else f"{sum(r.loser_named_owner for r in rs)}/{len(rs)}"
            problems = sum(bool(r.problems) for r in rs)
            print(f"{backend:<9} {kind:<14} {len(rs):>6} {doubles:>11} {hangs:>5} {named:>17} "
                  f"{problems:>8} {max(r.elapsed for r in rs):>7.2f}s")
            if problems or (kind != "expiry" and len(rs) < TARGET_TRIALS):
                met = False
        print(f"{backend:<9} {'(wall)':<14} {len(reports):>6} trials in {wall[backend]:.1f}s")
    print("-" * len(header))
    print(f"target (>= {TARGET_TRIALS} races of each kind per backend; no double execution, "
          f"no hang, every loser names the owner, every expiry taken over): "
          f"{'met' if met else 'MISSED'}")
    for backend, reports in results.items():
        for r in reports:
            for problem in r.problems:
                print(f"\n{backend} {r.kind}: {problem}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
