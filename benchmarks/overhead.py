"""Scheduling overhead of plait against hand-written asyncio, in one process.

Two measurements, each side by side with a baseline run in the same process,
interleaved so that drift hits both alike:

* per node: fan-outs and chains of 1,000, 10,000 and 100,000 no-op async nodes and
  a 50,000-node random DAG, run through plait and through a baseline with one
  asyncio task per node awaiting its parents' futures (a TaskGroup: create the
  tasks, await them, pass the values). Microseconds per node and the ratio.
* per row (a dataset job): N rows, each a small run of its own (`Run(...)` +
  `execute` of a workflow awaiting three no-op tools a -> b -> c), at most 256 rows
  in flight; the baseline runs the same rows through the same window, each row
  three awaited coroutine calls. Microseconds per row.

* tracing (issue 12): the same fan-out and chain with OpenTelemetry tracing on
  (`plait.otel.enable`, a BatchSpanProcessor to an exporter that drops what it is
  given; the export thread's CPU time counts) against tracing off, interleaved;
  microseconds of overhead per node. For scale, a no-op listener of the caller's:
  the four events per call the engine builds for a listener (the CLI's live view
  pays them), which tracing does without.

    python benchmarks/overhead.py [--repeat 5] [--scale 1.0] [--quick] [--clock cpu|wall]
    python benchmarks/overhead.py --tracing-only   # just the tracing lines

Targets (issue 11): plait <= 2.0x the baseline's time per node at 1k, 10k and 100k
nodes, fan-out and chain, and on the random DAG; engine cost per 3-call row
<= 100 us without a journal; the 100,000-node fan-out under 300 MB peak (issue 2).
Tracing (issue 12): <= 10 us per node on top of tracing off.

Small runs are timed many times within one event loop (at least about 100,000
nodes per sample), so loop start-up is not counted; `gc.freeze()` after the
imports keeps collections of the interpreter's own objects out of every sample.
The clock is this process's CPU time by default: every case is CPU-bound (no-op
tools, no I/O), so on an idle machine it equals wall time, and on a shared one it
does not count the time other processes hold the core (`--clock wall` for wall).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import plait
from plait import Ref
from plait.runtime._engine import Run


@plait.tool
async def noop(x: int) -> int:
    """Nothing."""
    return 0


@plait.tool
async def noop_many(xs: list) -> int:
    """Nothing."""
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


# ---------------------------------------------------------------- rows
# Each row: x -> a(x) -> b(.) -> c(.), every step awaited; the value is x + 3.


async def _a(x: int) -> int:
    """One more."""
    return x + 1


async def _b(x: int) -> int:
    """One more."""
    return x + 1


async def _c(x: int) -> int:
    """One more."""
    return x + 1


step_a, step_b, step_c = (plait.tool(f, name=n) for f, n in ((_a, "a"), (_b, "b"), (_c, "c")))


async def _rows(n: int, window: int, row: Callable[[int], Awaitable[int]]) -> None:
    """Run rows 0..n-1, at most `window` at once, as a row runner would; check values."""
    slots = asyncio.Semaphore(window)
    wrong: list[int] = []

    async def one(x: int) -> None:
        try:
            if await row(x) != x + 3:
                wrong.append(x)
        finally:
            slots.release()

    async with asyncio.TaskGroup() as tg:
        for x in range(n):
            await slots.acquire()
            tg.create_task(one(x))
    if wrong:
        raise AssertionError(f"rows {wrong[:5]} have wrong values")


async def baseline_row(x: int) -> int:
    return await _c(await _b(await _a(x)))


async def _row_body(x: int) -> int:
    a = await step_a(x)
    b = await step_b(a)
    return await step_c(b)


async def plait_row(x: int) -> int:
    result = await Run(entry="row").execute(lambda: _row_body(x))
    if not result.ok:
        raise AssertionError(f"row {x}: {result.error}")
    return result.value


# ---------------------------------------------------------------- measuring


CLOCK = time.process_time


def timed(fn: Callable[[], Awaitable[None]], times: int) -> list[float]:
    """Seconds of each of `times` runs of `fn`, all in one event loop."""

    async def all_of_them() -> list[float]:
        out = []
        for _ in range(times):
            gc.collect()
            t0 = CLOCK()
            await fn()
            out.append(CLOCK() - t0)
        return out

    return asyncio.run(all_of_them())


def peak_mb(fn: Callable[[], Awaitable[None]]) -> float:
    gc.collect()
    tracemalloc.start()
    asyncio.run(fn())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def side_by_side(base: Callable[[], Awaitable[None]], ours: Callable[[], Awaitable[None]],
                 units: int, repeat: int, nodes_per_unit: int = 1) -> tuple[float, float]:
    """Median seconds per unit (node or row) of `base` and `ours`, interleaved."""
    times = max(1, 100_000 // (units * nodes_per_unit))  # small cases: many runs per sample
    b: list[float] = []
    p: list[float] = []
    for _ in range(repeat):
        b.append(statistics.median(timed(base, times)) / units)
        p.append(statistics.median(timed(ours, times)) / units)
    return statistics.median(b), statistics.median(p)


# ---------------------------------------------------------------- tracing


def tracing_lines(repeat: int, scale: float) -> int:
    """Print the tracing lines; return how many missed their target."""
    import plait.otel
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropped(SpanExporter):
        """A no-op sink: what is measured is plait's side and the SDK's batching."""

        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    size = max(1, int(10_000 * scale))
    provider = TracerProvider()
    # A queue that holds a whole run: no span is dropped (a drop logs a warning).
    provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=2 * size))
    head = (f"{'tracing':<11} {'size':>7} {'off us':>8} {'events us':>9} {'on us':>8} "
            f"{'overhead':>9} {'target':>10}  {'met':<6}")
    print(f"\nOpenTelemetry tracing, median of {repeat} samples: us per node with tracing "
          "off, with a no-op listener (the per-call events), with tracing on")
    print(head)
    print("-" * len(head))
    missed = 0
    for name, parents in (("fan-out", fan_out(size)), ("chain", chain(size))):
        wf = plait_workflow(parents)
        times = max(1, 100_000 // len(parents))
        off: list[float] = []
        events: list[float] = []
        on: list[float] = []

        async def plain() -> None:
            await plait.arun(wf)

        async def listened() -> None:
            await plait.arun(wf, listeners=[lambda event: None])

        for _ in range(repeat):
            plait.otel.disable()
            off.append(statistics.median(timed(plain, times)) / len(parents))
            events.append(statistics.median(timed(listened, times)) / len(parents))
            plait.otel.enable(provider)
            on.append(statistics.median(timed(plain, times)) / len(parents))
        plait.otel.disable()
        provider.force_flush()
        o, e, t = (1e6 * statistics.median(x) for x in (off, events, on))
        ok = t - o <= 10
        missed += not ok
        print(f"{name:<11} {len(parents):>7} {o:>8.2f} {e:>9.2f} {t:>8.2f} {t - o:>9.2f} "
              f"{'<= 10 us':>10}  {'met' if ok else 'MISSED':<6}")
    provider.shutdown()
    return missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="samples per measurement (median)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply node and row counts")
    ap.add_argument("--quick", action="store_true",
                    help="3 samples, no 100k chain, no memory; a few seconds")
    ap.add_argument("--rows", type=int, default=20_000, help="rows in the per-row case")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="process CPU time (default) or wall time")
    ap.add_argument("--tracing-only", action="store_true",
                    help="only the OpenTelemetry tracing lines (needs plait[otel])")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    repeat = 3 if args.quick else args.repeat
    gc.collect()
    gc.freeze()

    def n(x: int) -> int:
        return max(1, int(x * args.scale))

    if args.tracing_only:
        missed = tracing_lines(repeat, args.scale)
        print(f"\n{'all targets met' if not missed else f'{missed} target(s) MISSED'}")
        return

    shapes = [
        ("fan-out", fan_out(n(1_000))),
        ("fan-out", fan_out(n(10_000))),
        ("fan-out", fan_out(n(100_000))),
        ("chain", chain(n(1_000))),
        ("chain", chain(n(10_000))),
    ]
    if not args.quick:
        shapes.append(("chain", chain(n(100_000))))
    shapes.append(("random DAG", random_dag(n(50_000))))

    head = (f"{'case':<11} {'size':>7} {'base us':>8} {'plait us':>9} {'ratio':>6} "
            f"{'target':>12}  {'met':<6}")
    print(f"median of {repeat} samples, {args.clock} time; no-op async tools; "
          "us per node (per row for rows)")
    print(head)
    print("-" * len(head))
    missed = 0
    for name, parents in shapes:
        b, p = side_by_side(lambda ps=parents: baseline(ps), lambda ps=parents: run_plait(ps),
                            len(parents), repeat)
        ok = p / b <= 2.0
        missed += not ok
        print(f"{name:<11} {len(parents):>7} {1e6 * b:>8.2f} {1e6 * p:>9.2f} {p / b:>5.2f}x "
              f"{'<= 2.0x':>12}  {'met' if ok else 'MISSED':<6}")

    rows, window = n(args.rows if not args.quick else args.rows // 4), 256
    b, p = side_by_side(lambda: _rows(rows, window, baseline_row),
                        lambda: _rows(rows, window, plait_row), rows, repeat, 3)
    ok = 1e6 * p <= 100
    missed += not ok
    print(f"{'3-call rows':<11} {rows:>7} {1e6 * b:>8.2f} {1e6 * p:>9.2f} {p / b:>5.1f}x "
          f"{'<= 100 us/row':>12}  {'met' if ok else 'MISSED':<6}")

    if not args.quick:
        parents = fan_out(n(100_000))
        base_mb = peak_mb(lambda: baseline(parents))
        ours_mb = peak_mb(lambda: run_plait(parents))
        ok = ours_mb <= 300
        missed += not ok
        print(f"\npeak memory, {len(parents)}-node fan-out (tracemalloc): baseline "
              f"{base_mb:.1f} MB, plait {ours_mb:.1f} MB (target <= 300 MB: "
              f"{'met' if ok else 'MISSED'})")
    missed += tracing_lines(repeat, args.scale)
    print(f"\n{'all targets met' if not missed else f'{missed} target(s) MISSED'}")


if __name__ == "__main__":
    main()
