"""Real runs for the web view's tests: workflows, a failed run, a question and a
dataset job with done, dropped and failed rows, journaled by plait itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import plait
from plait.llm import Message, SimLLM

# A DSN with a password, held in a run's arguments: the view must not show it.
SECRET_DSN = "postgresql://alice:pw-in-argument-7731@db.example:5432/prod"
GATES: dict[str, threading.Event] = {}
BROKEN: set[str] = set()
RUN_IDS = {"ok1", "bad1", "res1", "q1", "job1"}


@plait.tool
def shout(text: str) -> str:
    """Upper-cases; refuses "bad"."""
    if text == "bad":
        raise ValueError("bad word: cannot shout it")
    if text in BROKEN:
        raise ConnectionError(f"lost the line while shouting {text}")
    return text.upper()


@plait.tool
def wait_for(gate: str, value: str) -> str:
    """Returns `value` once the test opens `gate`."""
    assert GATES[gate].wait(30), f"gate {gate} never opened"
    return value


@plait.workflow
async def brief(topic: str, source: str = "") -> list[str]:
    facts = plait.generate(f"Three facts about {topic}.", model="sim")
    loud = shout(topic)
    return [await loud, await facts]


@plait.workflow
async def stepwise(n: int) -> list[str]:
    """Calls one after another, each waiting for its gate: a run the test advances."""
    out = []
    for i in range(n):
        out.append(await wait_for(f"step{i}", f"v{i}"))
    return out


@plait.workflow
async def review(row: dict) -> dict:
    if row["i"] % 4 == 1:
        return plait.DROP
    if row["i"] % 4 == 2:
        raise RuntimeError(f"row {row['i']}: the reviewer choked")
    return {"i": row["i"], "text": await shout(f"review {row['i']}")}


def _model(messages: Sequence[Message]) -> str:
    if "Finish:" in messages[0].content:
        return json.dumps({"action": "finish", "answer": "SHOUTED"})
    return '1. shout("everest")\n2. join()'


def make_runs(journal: str) -> None:
    """ok1 (done), bad1 (failed), res1 (failed, then resumed: its LLM call
    replayed), q1 (a question), job1 (a dataset job of 12 rows: 6 done, 3 dropped,
    3 failed)."""
    plait.run(brief, "tides", SECRET_DSN, journal=journal, run_id="ok1")
    plait.run(brief, "bad", journal=journal, run_id="bad1", raise_on_error=False)
    BROKEN.add("dunes")
    try:
        plait.run(brief, "dunes", journal=journal, run_id="res1", raise_on_error=False)
    finally:
        BROKEN.clear()
    plait.run(brief, "dunes", journal=journal, run_id="res1")
    plait.ask("How loud is Everest?", [shout], model=SimLLM(_model), journal=journal,
              run_id="q1")
    plait.map(review, [{"i": i} for i in range(12)], key="i", journal=journal,
              run_id="job1", raise_on_error=False)
