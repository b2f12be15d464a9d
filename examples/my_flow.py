"""The workflows the README and docs/durable.md run from the shell.

    plait run examples/my_flow.py:report K2 "Mount Everest"
    plait run examples/my_flow.py:nightly a b --journal runs.db --run-id nightly-1
    plait run examples/my_flow.py:tally '{"K2": 8611, "Mount Everest": 8849}' metres

The tools stand in for slow remote calls (a short sleep), so the runs show the
calls overlapping; nothing here needs a network.
"""

from __future__ import annotations

import asyncio

import plait


@plait.tool(retries=2, timeout=5.0)
async def lookup(entity: str) -> str:
    """A one-line description of `entity`.

    Args:
        entity: the name to look up
    """
    await asyncio.sleep(0.3)
    return f"{entity}: ..."


@plait.tool
def summarize(lines: list[str]) -> str:  # sync tools run in a thread pool
    """The lines, one under the other."""
    return "\n".join(lines)


@plait.workflow
async def report(*entities: str) -> str:
    """Look every entity up at once, then put the lines together."""
    lines = [lookup(e) for e in entities]  # each call starts now and returns a ref
    return await summarize(lines)  # runs when every input is done


@plait.tool(idempotent=True)
async def fetch(name: str) -> str:
    """Fetch a document (safe to repeat)."""
    await asyncio.sleep(0.1)
    return f"<{name}>"


@plait.tool
def publish(docs: list[str]) -> str:
    """Publish the documents (a side effect: never twice by accident)."""
    return " ".join(docs)


@plait.workflow
async def nightly(*names: str) -> str:
    """Fetch every document, then publish them together."""
    return await publish([fetch(n) for n in names])


@plait.tool
def total(counts: dict[str, float], unit: str) -> str:
    """The sum of the counts, with its unit."""
    return f"{sum(counts.values()):g} {unit}"


@plait.workflow
async def tally(counts: dict[str, float], unit: str = "") -> str:
    """A workflow that takes JSON from the command line: a dict, then a string."""
    return await total(counts, unit)
