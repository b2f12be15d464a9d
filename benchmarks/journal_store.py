"""Journal store micro-benchmark: µs per node (one intent + one result) through
the group-commit JournalWriter, with N concurrent callers on one event loop.

    PYTHONPATH=. python benchmarks/journal_store.py [--nodes 20000] [--concurrency 64]
        [--repeats 5] [--postgres postgresql://postgres@127.0.0.1:5432/test | --no-postgres]

Each caller loops: await writer.intents([intent]) (returns once committed), then
writer.result(result) (queued). Every run ends with a flush, so all records are
durable when the clock stops. Prints the median of `repeats` runs.
Budget for the engine integration later: <= 250 µs/node SQLite, <= 1 ms/node Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

from plait.journal import Intent, Journal, JournalWriter, Result, RunRecord, open_journal

DEFAULT_DSN = os.environ.get("PLAIT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _drive(journal: Journal, run_id: str, nodes: int, concurrency: int) -> tuple[float, int]:
    writer = JournalWriter(journal)
    counter = iter(range(nodes))

    async def caller() -> None:
        for i in counter:
            key = f"{i:032x}"
            await writer.intents([Intent(run_id, key, "search", {"q": f"query {i}", "limit": 5})])
            writer.result(
                Result(run_id, key, True, {"answer": f"result {i}", "score": i * 0.5}, tokens=12)
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    await writer.flush()
    elapsed = time.perf_counter() - t0
    await writer.aclose()
    return elapsed, writer.batches


def measure(
    opener: Callable[[], Journal], nodes: int, concurrency: int, repeats: int
) -> tuple[float, float, float]:
    """(median µs/node, min µs/node, median nodes per transaction)."""
    per_node, per_batch = [], []
    journal = opener()
    try:
        for _ in range(repeats):
            run_id = f"bench-{uuid.uuid4().hex[:8]}"
            journal.create_run(RunRecord(run_id, "bench"))
            elapsed, batches = asyncio.run(_drive(journal, run_id, nodes, concurrency))
            assert len(journal.load(run_id).results) == nodes
            journal.update_run(run_id, status="done")
            per_node.append(elapsed / nodes * 1e6)
            per_batch.append(nodes / max(batches, 1))
    finally:
        journal.close()
    return statistics.median(per_node), min(per_node), statistics.median(per_batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", default=DEFAULT_DSN)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as tmp:
        path = os.path.join(tmp, "bench.db")
        med, best, batch = measure(
            lambda: open_journal(path), args.nodes, args.concurrency, args.repeats
        )
        rows.append(("sqlite (WAL, synchronous=NORMAL)", med, best, batch, 250.0))

    if not args.no_postgres:
        schema = f"plait_bench_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in args.postgres else "?"
        spec = f"{args.postgres}{sep}schema={schema}"
        try:
            med, best, batch = measure(
                lambda: open_journal(spec), args.nodes // 2, args.concurrency, args.repeats
            )
            rows.append(("postgres (synchronous_commit=on)", med, best, batch, 1000.0))
        finally:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    print(
        f"journal store: {args.concurrency} concurrent callers, intent (awaited) + result "
        f"(queued) per node, median of {args.repeats} runs"
    )
    print(f"{'backend':<34} {'µs/node':>9} {'best':>9} {'nodes/tx':>9} {'budget':>8}")
    for name, med, best, batch, budget in rows:
        print(f"{name:<34} {med:>9.1f} {best:>9.1f} {batch:>9.1f} {budget:>8.0f}")


if __name__ == "__main__":
    main()
