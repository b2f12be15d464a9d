"""Real runs for the timeline's tests, journaled in real SQLite files.

- `crashed_run`: a workflow with parallel calls, one failing node and one retried
  twice; its process is SIGKILLed by its own `checkpoint` call (a crash at a
  known place), then the run is resumed in this process: the calls done before
  the crash are replayed, the failing one fails again, the rest run in session 2,
  after a gap.
- `question`: `plait.ask` on plait's scripted model (`SimLLM`): a plan whose lines
  are marked, three tasks, a joiner.
- `dataset_job`: `plait.map` over 2,500 rows, four calls a row (10,000 calls),
  one row in a hundred failing.

Run as a script (`python tests/timeline/runs.py JOURNAL RUN_ID DSN`), it is the
child whose process dies: `crash_flow` with PLAIT_TIMELINE_DIE set.
"""

from __future__ import annotations

if __name__ == "__main__":
    # As a script: import this file as its package module, so the run's entry is
    # "tests.timeline.runs:crash_flow", which the resume imports.
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[2]))
    from tests.timeline import runs as _module

    _sys.exit(_module.main())

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import plait
from plait.llm import Message, SimLLM

DIE_ENV = "PLAIT_TIMELINE_DIE"
SECRET = "hunter2"  # a DSN password held in an argument and a value: never shown
ROOT = Path(__file__).resolve().parents[2]


@plait.tool(idempotent=True)
async def fetch(source: str) -> str:
    """A page about `source`; the longer the name, the longer it takes. A read: a
    call cut by the crash is made again on resume."""
    await asyncio.sleep(0.03 + 0.01 * len(source))
    return f"page about {source}"


@plait.tool
async def flaky_index(source: str) -> str:
    """Always down."""
    await asyncio.sleep(0.02)
    raise ConnectionError("the index at postgresql://svc:" + SECRET + "@db/idx is down")


TRIES: dict[str, int] = {}


@plait.tool(retries=2, backoff=0.0, jitter=0.0)
async def shaky(source: str) -> str:
    """Fails twice, then works: three attempts."""
    TRIES[source] = TRIES.get(source, 0) + 1
    if TRIES[source] < 3:
        raise TimeoutError(f"try {TRIES[source]} timed out")
    return f"notes on {source}"


@plait.tool(idempotent=True)
async def checkpoint(page: str, dsn: str) -> str:
    """Kills its own process (SIGKILL: a crash) when PLAIT_TIMELINE_DIE is set."""
    if os.environ.get(DIE_ENV):
        os.kill(os.getpid(), signal.SIGKILL)
    await asyncio.sleep(0.02)
    return f"saved {page[:20]} to {dsn}"


@plait.tool
async def summarize(a: str, b: str, c: str) -> str:
    """The three in one line."""
    await asyncio.sleep(0.02)
    return f"{a} | {b} | {c}"


@plait.workflow
async def crash_flow(dsn: str) -> str:
    pages = [fetch(s) for s in ("K2", "Mount Everest", "Lhotse")]
    flaky_index("K2")
    shaky("K2")
    saved = checkpoint(pages[0], dsn)
    return await summarize(saved, pages[1], pages[2])


def main() -> int:
    journal, run_id, dsn = sys.argv[1:4]
    plait.run(crash_flow, dsn, journal=journal, run_id=run_id, on_error="continue")
    return 0  # not reached: `checkpoint` kills the process


def crashed_run(journal: str, run_id: str = "crash-1", resume: bool = True) -> None:
    """The crash (in a child process, SIGKILLed), then the resume (here)."""
    dsn = f"postgresql://svc:{SECRET}@db.example/prod"
    env = {**os.environ, DIE_ENV: "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(Path(__file__)), journal, run_id, dsn], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    if resume:
        try:
            plait.resume(run_id, journal)
        except plait.RunError:
            pass  # flaky_index fails again: the run ends failed, every other call done


def _planner_script(messages: Sequence[Message], role: str | None = None) -> str:
    if role == "planner":
        return ('Thought: look both up, then compare\n1. fetch("Mount Everest")\n'
                '2. fetch("K2")\n3. compare($1, $2)\n4. join()')
    return '{"action": "finish", "answer": "Mount Everest is taller"}'


@plait.tool
async def compare(a: str, b: str) -> str:
    """Which of two pages names the taller mountain."""
    await asyncio.sleep(0.03)
    return "Mount Everest"


def question(journal: str, run_id: str = "q-1") -> plait.Answer:
    model = SimLLM(_planner_script, ttft=0.05, tps=400)
    return plait.ask("Which is taller, Mount Everest or K2?", [fetch, compare], model=model,
                     journal=journal, run_id=run_id)


@plait.tool
async def tidy(text: str) -> str:
    """The text, stripped."""
    return text.strip()


@plait.tool
async def rate(text: str) -> int:
    """A score; rows whose id ends in 13 fail."""
    if text.endswith("13"):
        raise ValueError("unlucky row")
    return len(text)


@plait.tool
async def tag(text: str) -> str:
    """A short tag for the text."""
    return text.strip()[:3]


@plait.workflow
async def rate_row(row: dict) -> dict:
    """Four calls a row: tidy, then rate and tag it, and tag the raw text."""
    text = tidy(row["text"])
    tags = [tag(text), tag(row["text"])]
    return {"id": row["id"], "score": await rate(text), "tags": [await t for t in tags]}


def dataset_job(journal: str, run_id: str = "job-1", rows: int = 2500) -> plait.MapResult:
    data = [{"id": i, "text": f" review {i}"} for i in range(rows)]
    return plait.map(rate_row, data, key="id", journal=journal, run_id=run_id)
