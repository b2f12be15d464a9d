"""Scheduling overhead of plait against hand-written asyncio, in one process.

For each shape (a 100,000-node fan-out, a 10,000-node chain, a 50,000-node random
DAG) it runs no-op async nodes through plait and through a baseline with one
asyncio task per node awaiting its parents' futures, and prints nodes per second,
microseconds per node, the ratio, and peak memory (tracemalloc) of each.

    python benchmarks/overhead.py [--repeat 5] [--scale 1.0]

Targets (issue 2): plait <= 2.0x the baseline's time on the fan-out and the random
DAG, <= 3.0x on the chain; the 100,000-node fan-out under 300 MB peak.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable

import plait
from plait import Ref


@plait.tool
async def noop(x: int) -> int:
    return 0


@plait.tool
async def noop_many(xs: list) -> int:
    return 0


# ---------------------------------------------------------------- the shapes
# A shape is a list of parent lists: node i depends on parents[i] (all < i).


def fan_out(n: int) -> list[list[int]]:
    return [[] for _ in range(n)]


def chain(n: int) -> list[list[int]]:
    return [[]] + [[i - 1] for i in range(1, n)]


def random_dag(n: int, seed: int = 7) -> list[list[int]]:
    rng = random.Random(seed)
    out: list[list[int]] = []
    for i in range(n):
        k = min(i, rng.choice((0, 1, 1, 2, 3)))
        out.append(sorted(rng.sample(range(max(0, i - 1000), i), k)) if k else [])
    return out


# ---------------------------------------------------------------- baseline


async def _noop_body() -> int:
    return 0


async def baseline(parents: list[list[int]]) -> None:
    """One task per node; each awaits its parents' futures, then runs the no-op."""
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in parents]

    async def node(i: int, ps: list[int]) -> None:
        for p in ps:
            await futures[p]
        futures[i].set_result(await _noop_body())

    async with asyncio.TaskGroup() as tg:
        for i, ps in enumerate(parents):
            tg.create_task(node(i, ps))


# ---------------------------------------------------------------- plait


def plait_workflow(parents: list[list[int]]) -> Callable:
    @plait.workflow
    async def wf() -> None:
        refs: list[Ref] = []
        for i, ps in enumerate(parents):
            if not ps:
                refs.append(noop(i))
            elif len(ps) == 1:
                refs.append(noop(refs[ps[0]]))
            else:
                refs.append(noop_many([refs[p] for p in ps]))
        return None

    return wf


async def run_plait(parents: list[list[int]]) -> None:
    await plait.arun(plait_workflow(parents))


# ---------------------------------------------------------------- measuring


def timed(fn: Callable, parents: list[list[int]]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    asyncio.run(fn(parents))
    return time.perf_counter() - t0


def peak_mb(fn: Callable, parents: list[list[int]]) -> float:
    gc.collect()
    tracemalloc.start()
    asyncio.run(fn(parents))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply node counts")
    args = ap.parse_args()
    shapes = [
        ("fan-out", fan_out(int(100_000 * args.scale)), 2.0),
        ("chain", chain(int(10_000 * args.scale)), 3.0),
        ("random DAG", random_dag(int(50_000 * args.scale)), 2.0),
    ]
    rows = []
    for name, parents, target in shapes:
        base, ours = [], []
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            base.append(timed(baseline, parents))
            ours.append(timed(run_plait, parents))
        b, p = statistics.median(base), statistics.median(ours)
        n = len(parents)
        rows.append(
            (name, n, n / b, n / p, 1e6 * b / n, 1e6 * p / n, p / b, target,
             peak_mb(baseline, parents), peak_mb(run_plait, parents))
        )
    head = (
        f"{'shape':<11} {'nodes':>7} {'base n/s':>10} {'plait n/s':>10} {'base us':>8} "
        f"{'plait us':>9} {'ratio':>6} {'target':>7} {'base MB':>8} {'plait MB':>9}"
    )
    print(f"median of {args.repeat} runs; no-op async nodes; peak memory by tracemalloc")
    print(head)
    print("-" * len(head))
    for r in rows:
        ok = "ok" if r[6] <= r[7] else "MISS"
        print(
            f"{r[0]:<11} {r[1]:>7} {r[2]:>10.0f} {r[3]:>10.0f} {r[4]:>8.1f} {r[5]:>9.1f} "
            f"{r[6]:>5.2f}x {'<=' + str(r[7]) + 'x ' + ok:>7} {r[8]:>8.1f} {r[9]:>9.1f}"
        )


if __name__ == "__main__":
    main()
