"""A journaled `plait.ask` in a child process, for the durable-ask tests.

    python tests/durable/ask_child.py --journal SPEC --run-id R --counter FILE [--die]

The model is plait's simulated backend (`SimLLM`) with a scripted reply per role:
a plan of three lookups and a `slow` call, then a joiner's answer. Every model
call and every tool call, the moment it starts, appends one line ("llm planner",
"tool fetch a", ...) to FILE (O_APPEND, one write(2), so it survives SIGKILL):
the ground truth of what ran and what was paid for, kept apart from the journal.
With `--speculate`, a draft model writes the same plan first, so the lookups
start as guesses and are adopted. With `--die`, the `slow` call SIGKILLs its own
process once the lookups' results have had time to be committed; `--not-idempotent`
makes `slow` a side effect. The child prints one JSON line: the answer, the tasks' values, and how many LLM calls
were replayed; or, exit status 3, the refusal of a resume with a call in doubt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import plait  # noqa: E402
from plait.runtime._engine import _current_node  # noqa: E402
from plait.llm import Message, SimLLM  # noqa: E402

PLAN = 'Thought: look all three up.\n1. fetch("a")\n2. fetch("b")\n3. fetch("c")\n' \
       '4. slow("${1} ${2} ${3}")\n5. join()'
ANSWER = '{"thought": "all found", "action": "finish", "answer": "a, b and c"}'
COUNTER: Path | None = None
DIE = False


def _count(line: str) -> None:
    assert COUNTER is not None
    fd = os.open(COUNTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def script(messages: Sequence[Message]) -> str:
    joiner = "Finish:" in messages[0].content
    _count("llm joiner" if joiner else "llm planner")
    return ANSWER if joiner else PLAN


@plait.tool(idempotent=True, speculate=True)
async def fetch(name: str) -> str:
    """Look `name` up."""
    _count(f"tool fetch {name}")
    current = _current_node.get()
    if current is not None and current[1] < 0:  # started as a speculative guess
        _count(f"guess fetch {name}")
    await asyncio.sleep(0.05)
    return f"found {name}"


async def _slow(text: str) -> str:
    """Take a while over `text`."""
    _count("tool slow")
    await asyncio.sleep(0.5)  # the lookups' results are committed meanwhile
    if DIE:
        os.kill(os.getpid(), signal.SIGKILL)
    return text.upper()


slow = plait.tool(idempotent=True, name="slow")(_slow)
slow_once = plait.tool(name="slow")(_slow)  # the same, but a side effect: never twice unasked


def main() -> int:
    global COUNTER, DIE
    p = argparse.ArgumentParser()
    p.add_argument("--journal", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--counter", required=True)
    p.add_argument("--die", action="store_true")
    p.add_argument("--not-idempotent", action="store_true", help="`slow` has a side effect")
    p.add_argument("--allow-rerun", action="store_true")
    p.add_argument("--speculate", action="store_true",
                   help="a draft model writes the plan first: the lookups start as guesses")
    args = p.parse_args()
    COUNTER, DIE = Path(args.counter), args.die
    llm = SimLLM(script, ttft=0.01, tps=500)
    tools = [fetch, slow_once if args.not_idempotent else slow]
    try:
        answer = plait.ask("Find a, b and c.", tools, model=llm, journal=args.journal,
                           run_id=args.run_id, allow_rerun=args.allow_rerun,
                           speculate=plait.draft(SimLLM(PLAN, ttft=0.0, tps=5000))
                           if args.speculate else None)
    except plait.InDoubtError as exc:
        print(json.dumps({"in_doubt": str(exc)}))
        return 3
    print(json.dumps({
        "answer": answer.text,
        "values": {t.number: t.value for t in answer.tasks},
        "replayed_llm_calls": sum(c.replayed for c in answer.llm_calls),
        "tokens": answer.tokens,
        "hits": answer.speculation.hits if answer.speculation else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
