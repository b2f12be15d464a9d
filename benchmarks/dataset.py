"""A dataset pipeline on a simulated server with a known ceiling: plait against the
shapes people write by hand, measured in the same run on the same model.

    python benchmarks/dataset.py [--rows 20000] [--repeat 3] [--quick]
        [--engine-rows 20000] [--memory] [--resume-rows 200000]

Workload (W2): per row, generate -> answer -> judge (three LLM calls, each taking
the previous reply), then 30% of the rows are dropped. Reply lengths are
log-normal (mean 40 tokens, sigma 1.0). The model is `sim` in-process with a
capacity: 192 slots, a shared 40,000 tokens/s, 200 tokens/s per stream, ttft 50 ms,
whole replies (not streamed),
so the ceiling (`SimLLM.ceiling`) is computable: rows/s <= min(T/(L-1), S/(ttft +
(L-1)/tps)) / 3. Every variant calls the same `SimLLM` object, whose counters
show that each made 3 calls per row.

Variants (same window of 256 rows in flight where they have one):
  plait        plait.amap(workflow, rows, window=256): one small run per row,
               calls through plait.generate (LLM-call nodes), no journal
  plait+sqlite the same, journaled to a fresh SQLite file
  hand-written asyncio: 256 workers pulling rows, three awaited calls each (the
               ceiling a good engineer reaches)
  stage        DataFlow's shape: each stage over all rows (256 at a time) before
               the next stage starts
  batch        batch-synchronous (Ray Data's HTTP stage): batches of 64 rows go
               through each stage together; 4 batches at once

Also: the engine's own cost per 3-call row (process CPU time per row with calls
that return at once, no journal and SQLite); with --memory, peak RSS at 1M rows
against 100k (subprocesses, no journal); with --resume-rows N, an N-row SQLite
job killed at 50% and resumed: seconds to its first new call.

Targets (issue 11): plait >= 0.90 of the ceiling and >= 0.95 of hand-written;
>= 1.2x stage and >= 1.5x batch; engine <= 100 us/row without journal and <= 300
us/row with SQLite; RSS(1M) <= 1.2 x RSS(100k); first new call of a resume <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import plait
from plait.llm import Message, SimLLM

WINDOW = 256
BATCH = 64
STAGES = ("generate", "answer", "judge")


def make_llm() -> SimLLM:
    # Whole replies (stream=False), as a pipeline asks a server for them: the same
    # timing and capacity, a fraction of the CPU per call.
    return SimLLM(ttft=0.05, tps=200, slots=192, capacity=40_000,
                  lengths="lognormal:mean=40,sigma=1.0", seed=1, stream=False)


def dropped(i: int) -> bool:
    return zlib.crc32(str(i).encode()) % 10 < 3


def rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"id": i, "text": f"topic {i}"}


def prompt(stage: str, text: str) -> str:
    # Short prompts: the replies are filler text of drawn lengths; a stage sees
    # the start of the previous reply, as a real pipeline sees all of it.
    return f"{stage}: {text[:60]}"


# ---------------------------------------------------------------- the variants


@plait.workflow
async def w2(row: dict) -> Any:
    text = row["text"]
    for stage in STAGES:
        text = await plait.generate(prompt(stage, text), name=stage)
    if dropped(row["id"]):
        return plait.DROP
    return {"id": row["id"], "verdict": text[:20]}


async def run_plait(llm: SimLLM, n: int) -> int:
    result = await plait.amap(w2, rows(n), window=WINDOW, model=llm)
    return result.rows_done


async def call(llm: SimLLM, stage: str, text: str) -> str:
    return (await llm.complete([Message("user", prompt(stage, text))])).text


async def run_asyncio(llm: SimLLM, n: int) -> int:
    source = rows(n)
    kept = 0

    async def worker() -> None:
        nonlocal kept
        for row in source:  # workers share the iterator: rows are pulled as slots free
            text = row["text"]
            for stage in STAGES:
                text = await call(llm, stage, text)
            if not dropped(row["id"]):
                kept += 1

    await asyncio.gather(*(worker() for _ in range(WINDOW)))
    return kept


async def run_stages(llm: SimLLM, n: int) -> int:
    texts = [r["text"] for r in rows(n)]
    gate = asyncio.Semaphore(WINDOW)

    async def one(stage: str, text: str) -> str:
        async with gate:
            return await call(llm, stage, text)

    for stage in STAGES:  # a barrier per stage
        texts = list(await asyncio.gather(*(one(stage, t) for t in texts)))
    return sum(1 for i in range(n) if not dropped(i))


async def run_batches(llm: SimLLM, n: int) -> int:
    source = rows(n)
    kept = 0

    async def batcher() -> None:
        nonlocal kept
        while True:
            batch = [r for _, r in zip(range(BATCH), source)]
            if not batch:
                return
            texts = [r["text"] for r in batch]
            for stage in STAGES:  # the whole batch waits for its slowest call
                texts = list(await asyncio.gather(*(call(llm, stage, t) for t in texts)))
            kept += sum(1 for r in batch if not dropped(r["id"]))

    await asyncio.gather(*(batcher() for _ in range(WINDOW // BATCH)))
    return kept


# ---------------------------------------------------------------- measuring


def measure(name: str, fn: Callable[[SimLLM, int], Awaitable[int]], n: int) -> dict[str, Any]:
    llm = make_llm()
    start = time.perf_counter()
    cpu = time.process_time()
    kept = asyncio.run(fn(llm, n))
    elapsed = time.perf_counter() - start
    calls = llm.stats.served
    assert calls == 3 * n, f"{name}: {calls} calls for {n} rows"
    assert kept == sum(1 for i in range(n) if not dropped(i)), (name, kept)
    return {"rows/s": n / elapsed, "cpu_us_row": (time.process_time() - cpu) / n * 1e6,
            "ceiling": llm.ceiling(calls_per_row=3)}


@plait.tool
async def instant(text: str) -> str:
    """Returns at once: what is left is the engine's own cost."""
    return text


@plait.workflow
async def three(row: dict) -> dict:
    a = await instant(row["text"])
    b = await instant(a)
    return {"id": row["id"], "v": await instant(b)}


def engine_cost(n: int, journal: bool) -> float:
    """Process CPU µs per 3-call row (the journal writer's thread included)."""
    with tempfile.TemporaryDirectory() as d:
        spec = str(Path(d) / "runs.db") if journal else None
        before = resource.getrusage(resource.RUSAGE_SELF)
        plait.map(three, rows(n), window=WINDOW, journal=spec, key="id" if journal else None)
        after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used / n * 1e6


def peak_rss(n: int) -> int:
    """Peak RSS (kB) of a subprocess mapping `three` over n generated rows."""
    code = ("import sys, resource; sys.path.insert(0, 'benchmarks'); import dataset, plait; "
            f"plait.map(dataset.three, dataset.rows({n}), window={WINDOW}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.split()[-1])


RESUME_CHILD = """
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import plait, dataset

@plait.tool(idempotent=True)
async def mark(text: str) -> str:
    \"\"\"Notes the first call of this process, then returns at once.\"\"\"
    if not os.environ.get("MARKED"):
        os.environ["MARKED"] = "1"
        print("FIRST", time.time(), flush=True)
    return text

@plait.workflow
async def job(row: dict) -> dict:
    return {"id": row["id"], "v": await mark(await mark(row["text"]))}

print("START", time.time(), flush=True)
plait.map(job, sys.argv[1], key="id", journal=sys.argv[2], run_id="resume-bench", window=256)
print("END", time.time(), flush=True)
"""


def resume_first_call(n: int) -> tuple[float, int]:
    """An n-row job killed once half its rows are done, then resumed: seconds from
    the resumed process's start to its first new call, and rows done at the kill."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.jsonl"
        with src.open("w") as f:
            for r in rows(n):
                f.write(json.dumps(r) + "\n")
        journal = str(Path(d) / "runs.db")
        script = Path(d) / "child.py"
        script.write_text(RESUME_CHILD)
        cwd = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(cwd)}
        proc = subprocess.Popen([sys.executable, str(script), str(src), journal],
                                stdout=subprocess.PIPE, text=True, cwd=cwd, env=env)
        try:
            deadline = time.monotonic() + 600
            done = 0
            while time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    j = plait.journal.open_journal(journal)
                    try:
                        done = j.count_rows("resume-bench").get("done", 0)
                    finally:
                        j.close()
                except plait.PlaitError:
                    continue
                if done >= n // 2:
                    break
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        started = time.time()
        out = subprocess.run([sys.executable, str(script), str(src), journal],
                             capture_output=True, text=True, cwd=cwd, env=env, timeout=1200)
        first = next(float(line.split()[1]) for line in out.stdout.splitlines()
                     if line.startswith("FIRST"))
        return first - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine-rows", type=int, default=20_000)
    parser.add_argument("--memory", action="store_true", help="RSS at 1M vs 100k rows (slow)")
    parser.add_argument("--resume-rows", type=int, default=0,
                        help="time a resume of a job of this many rows killed at 50%%")
    parser.add_argument("--quick", action="store_true", help="2,000 rows, one repeat")
    parser.add_argument("--only", default="", help="comma-separated variants to run "
                        "(e.g. plait,asyncio for a long run); targets of the others are "
                        "not printed")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine cost")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat, args.engine_rows = 2_000, 1, 5_000
    n = args.rows
    variants = {
        "plait": run_plait,
        "hand-written asyncio": run_asyncio,
        "stage-at-a-time": run_stages,
        "batch-synchronous": run_batches,
    }
    if args.only:
        wanted = args.only.split(",")
        variants = {k: v for k, v in variants.items() if any(w in k for w in wanted)}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants}
    for _ in range(args.repeat):  # interleaved, so drift hits all alike
        for name, fn in variants.items():
            runs[name].append(measure(name, fn, n))
    med = {k: statistics.median(r["rows/s"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu_us_row"] for r in v) for k, v in runs.items()}
    if runs:
        ceiling = next(iter(runs.values()))[0]["ceiling"]
        print(f"W2 (generate -> answer -> judge, 30% dropped), {n:,} rows, window {WINDOW}, "
              f"median of {args.repeat}; ceiling {ceiling:.1f} rows/s")
        print(f"{'variant':24} {'rows/s':>9} {'of ceiling':>11} {'CPU us/row':>11}")
        for k in variants:
            print(f"{k:24} {med[k]:9.1f} {med[k] / ceiling:11.3f} {cpu[k]:11.0f}")
    targets = []
    if "plait" in med:
        targets.append(("plait / ceiling", med["plait"] / ceiling, 0.90))
        for other, label, bar in (("hand-written asyncio", "hand-written asyncio", 0.95),
                                  ("stage-at-a-time", "stage-at-a-time", 1.2),
                                  ("batch-synchronous", "batch-synchronous", 1.5)):
            if other in med:
                targets.append((f"plait / {label}", med["plait"] / med[other], bar))
    lower = []
    if not args.no_engine:
        engine = [statistics.median(engine_cost(args.engine_rows, j)
                                    for _ in range(args.repeat)) for j in (False, True)]
        print(f"\nengine cost per 3-call row ({args.engine_rows:,} rows, calls return at "
              f"once): {engine[0]:.0f} us without journal, {engine[1]:.0f} us with SQLite")
        lower += [("engine us/row, no journal", engine[0], 100.0),
                  ("engine us/row, SQLite", engine[1], 300.0)]
    if args.memory:
        small, large = peak_rss(100_000), peak_rss(1_000_000)
        print(f"peak RSS: {small / 1024:.0f} MB at 100k rows, {large / 1024:.0f} MB at 1M")
        lower.append(("RSS 1M / RSS 100k", large / small, 1.2))
    if args.resume_rows:
        first, done = resume_first_call(args.resume_rows)
        print(f"resume of a {args.resume_rows:,}-row job killed at {done:,} rows done: "
              f"first new call after {first:.2f} s")
        lower.append(("resume: s to first new call", first, 10.0))
    print(f"\n{'target':34} {'measured':>9} {'bar':>7}")
    for label, value, bar in targets:
        print(f"{label:34} {value:9.3f} {'>= ' + str(bar):>7}  {'met' if value >= bar else 'MISSED'}")
    for label, value, bar in lower:
        print(f"{label:34} {value:9.2f} {'<= ' + str(bar):>7}  {'met' if value <= bar else 'MISSED'}")


if __name__ == "__main__":
    main()
