"""Workflows the OTLP tests run with `plait run` in a subprocess."""

from __future__ import annotations

import asyncio
import os

import plait


@plait.tool
async def search(q: str) -> str:
    """Waits a little, then echoes (two of them run at once)."""
    await asyncio.sleep(0.2)
    return f"found {q}"


@plait.tool(idempotent=True)
async def slow(text: str) -> int:
    """Hangs while $PLAIT_TEST_HANG is set: the run is killed there."""
    if os.environ.get("PLAIT_TEST_HANG"):
        await asyncio.sleep(120)
    return len(text)


@plait.workflow
async def brief(topic: str) -> int:
    a, b = search(topic), search(topic + " history")
    summary = plait.generate(f"Summarize what is known about {topic}.",
                             model="sim:ttft=0.05,tps=500", max_tokens=30)
    return await slow(f"{await a} {await b} {await summary}")
