"""The question that `test_many_questions.py` and `benchmarks/many_questions.py` ask
by the thousand: a scripted plan of two lookups, then the joiner's answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import plait
from plait.runtime._tools import Tool
from plait.llm import Message

PLAN = '1. lookup("x")\n2. lookup("y")\n3. join()'
FINISH = '{"action": "finish", "answer": "x and y"}'


def script(messages: Sequence[Message], role: str | None) -> str:
    return FINISH if role == "joiner" else PLAN


def lookup_tool(delay: float) -> Tool:
    """`lookup(name)`, which takes `delay` seconds."""

    @plait.tool
    async def lookup(name: str) -> str:
        """Look `name` up.

        Args:
            name: what to look up
        """
        await asyncio.sleep(delay)
        return f"{name}!"

    return lookup
