"""An offline example workflow: fan out lookups, then combine them.

    plait run plait.examples.fanout:report "Mariana Trench" "Mount Everest" "Lake Baikal"

The tools stand in for slow remote calls (a fixed, made-up latency each), so the
run shows what the scheduler buys: the lookups overlap, and the run takes about
as long as its critical path instead of the sum of all calls.
"""

from __future__ import annotations

import asyncio
import time

import plait

# Made-up facts, so the example needs no network.
FACTS = {
    "mariana trench": ("deepest known point of Earth's oceans", 10_984),
    "mount everest": ("highest mountain above sea level", 8_849),
    "lake baikal": ("deepest lake in the world", 1_642),
    "k2": ("second-highest mountain on Earth", 8_611),
    "challenger deep": ("deepest part of the Mariana Trench", 10_935),
}


@plait.tool(retries=2, timeout=5.0, idempotent=True)
async def lookup(entity: str) -> str:
    """A one-line description of `entity`, from a small offline table.

    Args:
        entity: the name to look up, e.g. "Mount Everest"
    """
    await asyncio.sleep(0.2 + 0.05 * (len(entity) % 5))  # stands in for a remote call
    fact = FACTS.get(entity.strip().lower())
    return f"{entity}: {fact[0]}" if fact else f"{entity}: (no entry)"


@plait.tool(idempotent=True)
async def measure(entity: str) -> int:
    """The height or depth of `entity` in metres, 0 when unknown.

    Args:
        entity: the name to measure
    """
    await asyncio.sleep(0.3)
    fact = FACTS.get(entity.strip().lower())
    return fact[1] if fact else 0


@plait.tool(concurrency=2)
def summarize(lines: list[str], sizes: list[int]) -> str:
    """Join the descriptions, largest first (a sync tool: it runs in a thread)."""
    time.sleep(0.1)
    ranked = sorted(zip(sizes, lines), reverse=True)
    return "\n".join(f"{size:>6} m  {line}" for size, line in ranked)


@plait.workflow
async def report(*entities: str) -> str:
    """Look up and measure every entity in parallel, then summarize."""
    if not entities:
        entities = ("Mariana Trench", "Mount Everest", "Lake Baikal", "K2")
    lines = [lookup(e) for e in entities]  # each call starts now and returns a ref
    sizes = [measure(e) for e in entities]
    return await summarize(lines, sizes)  # runs when all of its inputs are done
