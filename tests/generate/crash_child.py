"""A journaled workflow of LLM calls in a child process, for the crash test.

    python tests/generate/crash_child.py --journal DB --run-id R --counter FILE [--die]

Two calls ("facts", "title") run at once; a third ("draft") takes both replies.
The model is plait's simulated backend; every call it is asked to make appends
one line (its prompt's first word) to FILE with one write(2) (O_APPEND), so the
count survives SIGKILL: the ground truth of what was paid for. With `--die` the
"draft" call SIGKILLs its own process: the first two calls have finished and
their results were committed with the draft's intent. Prints the value as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import plait  # noqa: E402
from plait.llm import Message, SimLLM  # noqa: E402

ARGS = argparse.Namespace()


def script(messages: Sequence[Message]) -> str:
    word = messages[-1].content.split()[0]
    fd = os.open(ARGS.counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{word}\n".encode())
    finally:
        os.close(fd)
    if word == "draft" and ARGS.die:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"<{word} reply>"


MODEL = SimLLM(script, ttft=0.05, tps=2000)


@plait.workflow
async def article(topic: str) -> str:
    facts = plait.generate(f"facts about {topic}", model=MODEL)
    title = plait.generate(f"title for {topic}", model=MODEL, temperature=0.7)
    return await plait.generate(plait.Template(("draft from ", facts, " and ", title)),
                                model=MODEL)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--die", action="store_true")
    parser.parse_args(namespace=ARGS)
    result = plait.run(article, "tides", journal=ARGS.journal, run_id=ARGS.run_id)
    print(json.dumps({"value": result.value, "replayed": result.replayed}))
