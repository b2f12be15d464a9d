"""What journaling costs a run, and how long a resume takes, in one process.

    python benchmarks/journal.py [--repeat 5] [--nodes 2000] [--parallel 64]
        [--resume-nodes 10000] [--postgres DSN | --no-postgres]

Overhead: a workflow of `--nodes` independent calls of a tool that yields once,
run with `max_concurrency=--parallel`, with no journal and with a journal on
SQLite (a fresh file) and on PostgreSQL (a fresh schema); µs per node is
(journaled time - unjournaled time) / nodes, medians of `--repeat` runs
interleaved so that drift hits all alike. Each journaled node commits an intent
before it starts and a result after it ends (the engine's real path,
`plait.arun(..., journal=...)`).

Resume: a `--resume-nodes` workflow whose last tenth fails on the first run
(`on_error="continue"`), so the journal holds 9,000 results of 10,000; then
`plait.aresume` is timed: opening the journal, loading the run, replaying 9,000
calls and running the 1,000 left.

Targets (issue 5): <= 250 µs/node on SQLite, <= 1 ms/node on PostgreSQL, resume
<= 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import plait

DEFAULT_DSN = os.environ.get("PLAIT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

FAIL_FROM: int | None = None  # the resume run's first pass fails nodes from here on


@plait.tool(idempotent=True)
async def step(i: int) -> int:
    await asyncio.sleep(0)  # yield once, as any real call does
    if FAIL_FROM is not None and i >= FAIL_FROM:
        raise RuntimeError(f"node {i} fails on the first pass")
    return i


@plait.workflow
async def fan(n: int) -> int:
    refs = [step(i) for i in range(n)]
    return len(refs)


def _timed_run(n: int, parallel: int, journal: str | None) -> float:
    gc.collect()
    t0 = time.perf_counter()
    result = plait.run(fan, n, max_concurrency=parallel, journal=journal)
    elapsed = time.perf_counter() - t0
    assert result.value == n and result.replayed == 0
    return elapsed


@contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    """A journal spec in a fresh schema of `dsn`, dropped afterwards."""
    import psycopg

    schema = f"plait_bench_{uuid.uuid4().hex[:10]}"
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def overhead(
    backends: dict[str, Callable[[], str]], n: int, parallel: int, repeat: int
) -> dict[str, list[float]]:
    """Seconds per run for each backend (and None, no journal), interleaved."""
    times: dict[str, list[float]] = {"none": [], **{name: [] for name in backends}}
    _timed_run(n, parallel, None)  # warm up imports and the thread pool
    for _ in range(repeat):
        times["none"].append(_timed_run(n, parallel, None))
        for name, fresh in backends.items():
            times[name].append(_timed_run(n, parallel, fresh()))
    return times


def resume_time(spec: str, n: int) -> tuple[float, int]:
    """Seconds to resume a run of `n` nodes with 90% done; and how many were replayed."""
    global FAIL_FROM
    run_id = f"resume-{uuid.uuid4().hex[:8]}"
    FAIL_FROM = n - n // 10
    try:
        first = plait.run(fan, n, journal=spec, run_id=run_id, on_error="continue",
                          raise_on_error=False)
    finally:
        FAIL_FROM = None
    assert first.status == "failed"
    gc.collect()
    t0 = time.perf_counter()
    result = plait.resume(run_id, spec, workflow_fn=fan)
    elapsed = time.perf_counter() - t0
    assert result.value == n, result
    return elapsed, result.replayed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--resume-nodes", type=int, default=10_000)
    ap.add_argument("--postgres", default=DEFAULT_DSN)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
        files = iter(range(10**6))
        backends: dict[str, Callable[[], str]] = {
            "sqlite": lambda: str(Path(tmp) / f"o{next(files)}.db")
        }
        budgets = {"sqlite": 250.0, "postgresql": 1000.0}
        with (
            postgres_schema(args.postgres) if not args.no_postgres else nullcontext()
        ) as pg_spec:
            if pg_spec is not None:
                backends["postgresql"] = lambda: pg_spec  # fresh run ids, one schema
            times = overhead(backends, args.nodes, args.parallel, args.repeat)
            resumes = {"sqlite": resume_time(str(Path(tmp) / "resume.db"), args.resume_nodes)}
            if pg_spec is not None:
                resumes["postgresql"] = resume_time(pg_spec, args.resume_nodes)

    base = statistics.median(times["none"])
    n = args.nodes
    print(
        f"journal overhead: {n} calls at {args.parallel}-way parallelism, "
        f"median of {args.repeat} runs (no journal: {1e3 * base:.0f} ms, "
        f"{1e6 * base / n:.1f} µs/node)"
    )
    head = f"{'journal':<11} {'run ms':>8} {'µs/node':>9} {'overhead µs/node':>17} {'target':>9}"
    print(head)
    print("-" * len(head))
    missed = False
    for name in backends:
        t = statistics.median(times[name])
        extra = 1e6 * (t - base) / n
        ok = extra <= budgets[name]
        missed |= not ok
        print(f"{name:<11} {1e3 * t:>8.0f} {1e6 * t / n:>9.1f} {extra:>17.1f} "
              f"{'<=' + format(budgets[name], '.0f') + (' ok' if ok else ' MISS'):>9}")
    print()
    done = args.resume_nodes - args.resume_nodes // 10
    print(f"resume: a run of {args.resume_nodes} calls with {done} journaled")
    head = f"{'journal':<11} {'resume s':>9} {'replayed':>9} {'target':>9}"
    print(head)
    print("-" * len(head))
    for name, (seconds, replayed) in resumes.items():
        ok = seconds <= 2.0
        missed |= not ok
        print(f"{name:<11} {seconds:>9.2f} {replayed:>9} {'<=2 ' + ('ok' if ok else 'MISS'):>9}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
