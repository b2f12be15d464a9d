"""Shared tools and the scripted model for the compiler tests.

The scripted model is plait's own simulated backend, `plait.llm.SimLLM`, with a
callable script: `script(messages) -> reply`. It streams the reply word by word
with the timing asked for (ttft, tokens/s) and ignores grammars, so these tests
also see plans written by a model that is not constrained.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Sequence

import pytest

import plait
from plait.llm import Message, SimLLM

ASYNC_TEST_LIMIT = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests in a fresh event loop, with a hard time limit."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    marker = pyfuncitem.get_closest_marker("timeout")
    limit = float(marker.args[0]) - 5 if marker and marker.args else ASYNC_TEST_LIMIT
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), limit))
    return True


def role_of(messages: Sequence[Message]) -> str:
    """Which prompt this is: plan | repair | replan | joiner | react."""
    system, user = messages[0].content, messages[-1].content
    if "Finish:" in system or "one of the choices" in system:
        return "joiner"
    if "Observation" in system:
        return "react"
    if "These lines had errors" in user:
        return "repair"
    if "Results of the previous plan" in user:
        return "replan"
    return "plan"


def scripted(replies: dict[str, list[str] | str], *, ttft: float = 0.0, tps: float = 2000.0,
             calls: list[tuple[str, Sequence[Message]]] | None = None) -> SimLLM:
    """A SimLLM answering each role from its list of replies, in order (the last repeats)."""
    queues = {k: ([v] if isinstance(v, str) else list(v)) for k, v in replies.items()}

    def script(messages: Sequence[Message]) -> str:
        role = role_of(messages)
        if calls is not None:
            calls.append((role, messages))
        queue = queues.get(role)
        if not queue:
            raise AssertionError(f"no scripted reply for a {role} call")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return SimLLM(script, ttft=ttft, tps=tps)


@plait.tool
async def search(entity: str) -> str:
    """Look an entity up.

    Args:
        entity: the name
    """
    await asyncio.sleep(0.01)
    return f"{entity}: height {len(entity) * 100} m"


@plait.tool
def height(entity: str) -> float:
    """The height of an entity in metres."""
    return float(len(entity) * 100)


@plait.tool
def add(a: float, b: float = 0.0) -> float:
    """Add two numbers."""
    return a + b


@plait.tool
def concat(parts: list[str], sep: str = " ") -> str:
    """Join strings."""
    return sep.join(parts)


@plait.tool
def fail(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


TOOLS = {t.name: t for t in (search, height, add, concat, fail)}


@pytest.fixture
def tools() -> dict[str, plait.Tool]:
    return dict(TOOLS)


class Clock:
    """Records when things happened (perf_counter)."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter())


def recording_tool(clock: Clock, delay: float = 0.05) -> plait.Tool:
    @plait.tool(name="probe")
    async def probe(label: str) -> str:
        """Records when it starts."""
        clock.mark(f"start:{label}")
        await asyncio.sleep(delay)
        clock.mark(f"end:{label}")
        return label

    return probe


Script = Callable[[Sequence[Message]], str]
