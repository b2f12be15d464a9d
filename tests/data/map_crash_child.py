"""The dataset crash tests' child: a journaled `plait.map` over a JSONL file.

    python tests/data/map_crash_child.py --journal SPEC --run-id R --source IN.jsonl
        --out OUT.jsonl --counter FILE [--window N]

Runs (or resumes: same run id) `crash_rows` over every row (`llm_rows`, LLM calls
to the server at URL, with `--llm URL`). Every tool, the moment
it starts, appends "<node key>\\n" to FILE (O_APPEND, one write(2) per line, so
the line is in the kernel before the call goes on and survives a SIGKILL): the
ground truth of what was paid for, kept apart from the journal. Prints READY just
before the job starts, and DONE with the counts at its end.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Run as a script: import this file as its package module, so the job's entry
    # is "tests.data.map_crash_child:crash_rows" and imports on resume.
    import sys as _sys
    from pathlib import Path as _Path

    _sys.path.insert(0, str(_Path(__file__).resolve().parents[2]))
    from tests.data import map_crash_child as _module

    _sys.exit(_module.main())

import argparse
import asyncio
import json
import os
import random
from typing import Any

import plait

COUNTER_ENV = "PLAIT_MAP_COUNTER"
_fd: int | None = None


def _paid() -> None:
    global _fd
    if _fd is None:
        _fd = os.open(os.environ[COUNTER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{plait.node_key()}\n".encode())


@plait.tool(idempotent=True)
async def stage(name: str, text: str) -> str:
    """One paid call: waits 0-4 ms, so a kill lands while calls are in flight."""
    _paid()
    await asyncio.sleep(random.random() * 0.004)
    return f"{name}({text})"


@plait.workflow
async def llm_rows(row: dict) -> Any:
    """The same pipeline as LLM calls to an OpenAI-compatible server (the test's
    sim-server, which counts what it is asked: the ground truth of what was paid)."""
    draft = await plait.generate(f"gen {row['id']}", name="gen", max_tokens=8)
    answer = await plait.generate(f"answer {draft}", name="answer", max_tokens=8)
    if row["id"] % 10 < 3:
        return plait.DROP
    verdict = await plait.generate(f"judge {answer}", name="judge", max_tokens=8)
    return {"id": row["id"], "verdict": verdict}


@plait.workflow
async def crash_rows(row: dict) -> Any:
    draft = await stage("gen", str(row["id"]))
    answer = await stage("answer", draft)
    if row["id"] % 10 < 3:  # 30% dropped
        return plait.DROP
    verdict = await stage("judge", answer)
    return {"id": row["id"], "verdict": verdict}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--llm", help="base URL of an OpenAI-compatible server: the rows "
                        "make LLM calls to it instead of calling tools")
    args = parser.parse_args()
    os.environ[COUNTER_ENV] = args.counter
    print("READY", flush=True)
    model = (f"openai:sim,stream=false" if args.llm else None)
    if args.llm:
        os.environ["OPENAI_BASE_URL"] = args.llm
    result = plait.map(llm_rows if args.llm else crash_rows, args.source, key="id",
                       out=args.out, journal=args.journal, run_id=args.run_id,
                       window=args.window, model=model)
    print("DONE", json.dumps({"done": result.rows_done, "dropped": result.rows_dropped,
                              "failed": result.rows_failed, "skipped": result.rows_skipped}),
          flush=True)
    return 0
