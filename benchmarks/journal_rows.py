"""Journal rows micro-benchmark: what a dataset job costs the journal.

    PYTHONPATH=. python benchmarks/journal_rows.py [--rows 20000] [--concurrency 64]
        [--big 100000] [--repeats 3]
        [--postgres postgresql://postgres@127.0.0.1:5432/test | --no-postgres]
    PYTHONPATH=. python benchmarks/journal_rows.py --rows-cost [--rows 20000] [--repeats 3]

1. Writing: `--rows` rows, `--concurrency` in flight, each three calls in a chain
   (await the intent, queue the result) and then its row record queued, through
   one group-commit JournalWriter; all durable when the clock stops. µs per row,
   and the same rows without their records (what the records add), alternated.
2. Resuming: a run of `--big` rows (three calls each, bulk-written), then
   `row_status` for chunks of 1,000 keys at random places: all finished, and
   a chunk past the end (never started: every key also probes the intents by
   row). Also `load_row`, an `iter_rows` page and `count_rows`.
Prints medians.

`--rows-cost`: what the journal adds to `plait.map` itself. A 3-call chain of a
tool that returns at once, over `--rows` rows (window 256, key "id"): no journal,
a fresh SQLite file, a fresh PostgreSQL schema; process CPU µs per row (user +
sys, the writer thread included), the journal writer thread's share of it, and
wall µs per row, medians of `--repeats`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

import dataset  # benchmarks/dataset.py: the same 3-call row (`three`)

import plait
from plait.journal import (
    Intent,
    Journal,
    JournalWriter,
    Result,
    RowRecord,
    RunRecord,
    open_journal,
)

DEFAULT_DSN = os.environ.get("PLAIT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CALLS = 3


def _calls(run_id: str, row: str) -> tuple[list[Intent], list[Result]]:
    intents = [Intent(run_id, f"{row}/{j}", f"stage{j}", {"row": row, "prompt": f"stage {j}"},
                      row_key=row) for j in range(CALLS)]
    results = [Result(run_id, f"{row}/{j}", True, {"text": f"answer {j} for {row}"}, tokens=40,
                      row_key=row) for j in range(CALLS)]
    return intents, results


async def _drive(journal: Journal, run_id: str, rows: int, concurrency: int,
                 records: bool) -> tuple[float, int]:
    writer = JournalWriter(journal)
    counter = iter(range(rows))

    async def worker() -> None:
        for o in counter:
            row = f"row-{o:08d}"
            intents, results = _calls(run_id, row)
            for intent, result in zip(intents, results, strict=True):
                await writer.intents([intent])
                writer.result(result)
            if records:
                writer.row(RowRecord(run_id, row, o, "done", results[-1].value, tokens=120))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await writer.flush()
    elapsed = time.perf_counter() - t0
    await writer.aclose()
    return elapsed, writer.batches


def measure_writes(opener: Callable[[], Journal], rows: int, concurrency: int,
                   repeats: int) -> tuple[float, float, float]:
    """(median µs per row, median rows per transaction, median µs per row without
    row records)."""
    per_row, per_batch, bare = [], [], []
    journal = opener()
    try:
        for _ in range(repeats):
            for records in (True, False):
                run_id = f"bench-{uuid.uuid4().hex[:8]}"
                journal.create_run(RunRecord(run_id, "bench"))
                elapsed, batches = asyncio.run(
                    _drive(journal, run_id, rows, concurrency, records))
                assert journal.count_rows(run_id)["done"] == (rows if records else 0)
                if records:
                    per_row.append(elapsed / rows * 1e6)
                    per_batch.append(rows / max(batches, 1))
                else:
                    bare.append(elapsed / rows * 1e6)
    finally:
        journal.close()
    return statistics.median(per_row), statistics.median(per_batch), statistics.median(bare)


def _ms(fn: Callable[[], object], times: int) -> float:
    spent = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        spent.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(spent)


def measure_reads(opener: Callable[[], Journal], big: int) -> dict[str, float]:
    journal = opener()
    try:
        run_id = f"big-{uuid.uuid4().hex[:8]}"
        journal.create_run(RunRecord(run_id, "bench"))
        t0 = time.perf_counter()
        for start in range(0, big, 5000):
            intents, results, records = [], [], []
            for o in range(start, min(start + 5000, big)):
                row = f"row-{o:08d}"
                i, r = _calls(run_id, row)
                intents += i
                results += r
                records.append(RowRecord(run_id, row, o, "done", r[-1].value, tokens=120))
            journal.write(intents, results, records)
        fill = time.perf_counter() - t0
        rng = random.Random(7)

        def chunk(start: int) -> list[str]:
            return [f"row-{o:08d}" for o in range(start, start + 1000)]

        def finished() -> None:
            keys = chunk(rng.randrange(0, big - 1000))
            assert len(journal.row_status(run_id, keys)) == 1000

        def unstarted() -> None:
            assert journal.row_status(run_id, chunk(big + rng.randrange(0, 10_000))) == {}

        def one_row() -> None:
            intents, results = journal.load_row(run_id, f"row-{rng.randrange(big):08d}")
            assert len(intents) == len(results) == CALLS

        return {
            "fill_s": fill,
            "status_done_ms": _ms(finished, 21),
            "status_new_ms": _ms(unstarted, 21),
            "load_row_ms": _ms(one_row, 51),
            "iter_page_ms": _ms(lambda: journal.iter_rows(run_id, after=big // 2), 11),
            "count_ms": _ms(lambda: journal.count_rows(run_id), 5),
        }
    finally:
        journal.close()


def _source(n: int):  # noqa: ANN202 - a generator of rows
    for i in range(n):
        yield {"id": i, "text": f"topic {i}"}


_WRITER_CPU: list[float] = []  # thread CPU seconds of each journal writer thread


def _timed_writer_thread() -> None:
    """Count the journal writer threads' CPU time (the rest is the event loop's)."""
    run = JournalWriter._run

    def timed(self: JournalWriter) -> None:
        try:
            run(self)
        finally:
            _WRITER_CPU.append(time.thread_time())

    JournalWriter._run = timed  # type: ignore[method-assign]


def map_cost(spec: Callable[[], str | None], rows: int,
             repeats: int) -> tuple[float, float, float]:
    """(median CPU µs per row, median writer-thread CPU µs per row, median wall µs
    per row) of `plait.map(three, ...)` with the journal `spec()` gives (a fresh
    one each time, or None)."""
    cpu, writer, wall = [], [], []
    for _ in range(repeats):
        journal = spec()
        _WRITER_CPU.clear()
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = plait.map(dataset.three, _source(rows), window=256, key="id", journal=journal)
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
        assert result.rows_done == rows, result
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        cpu.append(used / rows * 1e6)
        writer.append(sum(_WRITER_CPU) / rows * 1e6)
        wall.append(elapsed / rows * 1e6)
    return statistics.median(cpu), statistics.median(writer), statistics.median(wall)


def rows_cost(args: argparse.Namespace) -> None:
    _timed_writer_thread()
    table = [("no journal", map_cost(lambda: None, args.rows, args.repeats))]
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
        files = iter(range(1_000_000))
        table.append(("sqlite", map_cost(lambda: os.path.join(tmp, f"j{next(files)}.db"),
                                         args.rows, args.repeats)))
    if not args.no_postgres:
        import psycopg

        schemas: list[str] = []

        def fresh() -> str:
            schemas.append(f"plait_bench_{uuid.uuid4().hex[:8]}")
            sep = "&" if "?" in args.postgres else "?"
            return f"{args.postgres}{sep}schema={schemas[-1]}"

        try:
            table.append(("postgres", map_cost(fresh, args.rows, args.repeats)))
        finally:
            with psycopg.connect(args.postgres, autocommit=True, connect_timeout=5) as conn:
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    base = table[0][1][0]
    print(f"plait.map: {args.rows:,} rows x 3 instant calls, window 256, key 'id'; "
          f"medians of {args.repeats}")
    print(f"{'journal':<12} {'CPU µs/row':>11} {'wall µs/row':>12} {'journal CPU':>12} "
          f"{'loop thread':>12} {'writer thread':>14}")
    for name, (cpu, writer, wall) in table:
        loop = cpu - writer - base  # what the journal adds to the other threads
        print(f"{name:<12} {cpu:>11.1f} {wall:>12.1f} {cpu - base:>12.1f} {loop:>12.1f} "
              f"{writer:>14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default=DEFAULT_DSN)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--rows-cost", action="store_true",
                        help="plait.map's CPU per row with and without a journal")
    args = parser.parse_args()
    if args.rows_cost:
        rows_cost(args)
        return

    table = []
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
        path = os.path.join(tmp, "bench.db")
        writes = measure_writes(lambda: open_journal(path), args.rows, args.concurrency,
                                args.repeats)
        reads = measure_reads(lambda: open_journal(os.path.join(tmp, "big.db")), args.big)
        table.append(("sqlite (WAL, synchronous=NORMAL)", writes, reads))

    if not args.no_postgres:
        schema = f"plait_bench_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in args.postgres else "?"
        spec = f"{args.postgres}{sep}schema={schema}"
        try:
            writes = measure_writes(lambda: open_journal(spec), args.rows // 2,
                                    args.concurrency, args.repeats)
            reads = measure_reads(lambda: open_journal(spec), args.big)
            table.append(("postgres (synchronous_commit=on)", writes, reads))
        finally:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    print(f"writing: {args.concurrency} rows in flight, {CALLS} chained calls + 1 row record "
          f"per row, median of {args.repeats} runs")
    print(f"{'backend':<34} {'µs/row':>8} {'rows/tx':>8} {'no record':>10}")
    for name, (per_row, per_tx, bare), _ in table:
        print(f"{name:<34} {per_row:>8.1f} {per_tx:>8.1f} {bare:>10.1f}")
    print(f"\nresuming: a run of {args.big:,} rows ({CALLS} calls each); medians in ms")
    print(f"{'backend':<34} {'fill s':>7} {'1k done':>8} {'1k new':>8} {'load_row':>9} "
          f"{'page':>6} {'count':>7}")
    for name, _, r in table:
        print(f"{name:<34} {r['fill_s']:>7.1f} {r['status_done_ms']:>8.2f} "
              f"{r['status_new_ms']:>8.2f} {r['load_row_ms']:>9.3f} {r['iter_page_ms']:>6.1f} "
              f"{r['count_ms']:>7.1f}")


if __name__ == "__main__":
    main()
