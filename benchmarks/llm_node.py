"""What one LLM-call node costs, against a bare `llm.complete` and a no-op tool node.

    python benchmarks/llm_node.py [--rows 3000] [--repeat 3]

Each variant runs W2's shape on rows: three calls per row, each taking the
previous one's text, 256 rows in flight, on a SimLLM that answers at once
(ttft 0, 1e9 tokens/s, 5-token whole replies), so what is measured is CPU:
process CPU µs per call (median of `--repeat`), for

  bare llm.complete   256 asyncio workers calling `llm.complete` directly
  plait.generate      plait.amap of a workflow of three `plait.generate` calls
  no-op tool node     plait.amap of a workflow of three calls of a tool that
                      returns at once (the engine's own cost per node)

"generate - bare" is what a call costs for being a node; "generate - tool" is
what the LLM-call node adds over any node (its request, its record, its stream).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import plait
from plait.llm import Message, SimLLM

WINDOW = 256
CALLS = 3  # per row


def make_llm() -> SimLLM:
    return SimLLM(ttft=0, tps=1e9, lengths="fixed:5", stream=False)


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"topic {i}"} for i in range(n)]


@plait.workflow
async def generated(row: dict) -> str:
    text = row["text"]
    for k in range(CALLS):  # a distinct prompt per step: no call is another's duplicate
        text = await plait.generate(f"step {k}: {text[:40]}")
    return text


@plait.tool
async def instant(text: str) -> str:
    """Returns at once: what is left is the engine's own cost."""
    return text


@plait.workflow
async def tooled(row: dict) -> str:
    text = row["text"]
    for k in range(CALLS):
        text = await instant(f"step {k}: {text[:40]}")
    return text


async def run_bare(llm: SimLLM, n: int) -> None:
    source = iter(rows(n))

    async def worker() -> None:
        for row in source:
            text = row["text"]
            for k in range(CALLS):
                text = (await llm.complete([Message("user", f"step {k}: {text[:40]}")])).text

    await asyncio.gather(*(worker() for _ in range(WINDOW)))


async def run_generate(llm: SimLLM, n: int) -> None:
    result = await plait.amap(generated, rows(n), window=WINDOW, model=llm)
    assert result.rows_done == n, result


async def run_tool(llm: SimLLM, n: int) -> None:
    result = await plait.amap(tooled, rows(n), window=WINDOW)
    assert result.rows_done == n, result


def cpu_per_call(fn: Callable[[SimLLM, int], Awaitable[None]], n: int) -> float:
    """Process CPU µs per call, the collection of the variant's own cyclic garbage
    included (and none of another's)."""
    llm = make_llm()
    gc.collect()
    cpu = time.process_time()
    asyncio.run(fn(llm, n))
    gc.collect()
    used = time.process_time() - cpu
    return used / (n * CALLS) * 1e6


VARIANTS = {
    "bare llm.complete": run_bare,
    "plait.generate": run_generate,
    "no-op tool node": run_tool,
}


def measure(n: int, repeat: int) -> dict[str, float]:
    """Median CPU µs per call of each variant (interleaved, so drift hits all alike)."""
    for fn in VARIANTS.values():  # warm up: tools' schemas, imports, caches
        cpu_per_call(fn, min(n, 300))
    runs: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(repeat):
        for name, fn in VARIANTS.items():
            runs[name].append(cpu_per_call(fn, n))
    return {k: statistics.median(v) for k, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    med = measure(args.rows, args.repeat)
    print(f"CPU us per call, {args.rows:,} rows x {CALLS} calls, window {WINDOW}, "
          f"median of {args.repeat}")
    for name, us in med.items():
        print(f"{name:20} {us:8.1f}")
    gen, bare, tool = med["plait.generate"], med["bare llm.complete"], med["no-op tool node"]
    print(f"{'generate - bare':20} {gen - bare:8.1f}")
    print(f"{'generate - tool':20} {gen - tool:8.1f}")
    print(f"{'generate / bare':20} {gen / bare:8.2f}x")


if __name__ == "__main__":
    main()
