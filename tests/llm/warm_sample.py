"""A sample of joiner prompts and warm cut points for the warm == cold checks
(tests/llm/test_warming.py, and the 200-call run in benchmarks/warming.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from plait.compiler._prompt import Example, Shown, grounded_messages, literal_names
from plait.examples import tools as example_tools
from plait.llm import Message

TOOLS = [example_tools.search, example_tools.lookup, example_tools.calculator]


@dataclass(frozen=True)
class Case:
    messages: list[Message]  # the call's prompt
    known: list[Message]  # the beginning of it that is warmed (the last message cut)
    temperature: float


def sample(n: int, *, seed: int = 16, examples: bool = True) -> list[Case]:
    """`n` grounded joiner prompts over the bundled example questions, their results
    drawn at random, half at temperature 0 and half at 0.8; each warmed up to a
    random point of its last message (mid-word as often as not), as the compiler
    warms up to the first unfinished result."""
    rng = random.Random(seed)
    worked = [Example.parse(e) for e in example_tools.PLAN_EXAMPLES]
    cases = []
    for i in range(n):
        example = worked[i % len(worked)]
        shown = [Shown(k, call, rng.randint(100, 9000), tool=call.split("(")[0],
                       names=literal_names(call, TOOLS))
                 for k, (call, _) in enumerate(example.results, 1)]
        messages = grounded_messages(example.question, shown, TOOLS,
                                     example_tools.PLAN_EXAMPLES if examples else ())
        last = messages[-1]
        cut = rng.randint(0, len(last.content))
        known = [*messages[:-1], Message(last.role, last.content[:cut])]
        cases.append(Case(messages, known, 0.0 if i % 2 == 0 else 0.8))
    return cases
