"""The prompts: planner, repair, replan, joiner and ReAct, built from the tool registry.

Every prompt shows the tools the same way (signature, then the description's
first paragraph), so the planner, the joiner and the ReAct baseline see the
same tools. Values shown back to a model are cut to a bounded length.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from plait._tools import Tool
from plait.compiler._parser import PlanError
from plait.llm import Message

MAX_VALUE_CHARS = 600  # of one result shown to a model
MAX_DESCRIPTION = 300  # of one tool's description in a prompt


@dataclass(frozen=True, slots=True)
class Shown:
    """One task as the joiner, a replan or a repair sees it."""

    number: int
    call: str  # `search("K2")`
    value: Any = None
    error: str | None = None
    done: bool = True


def tool_list(tools: Iterable[Tool]) -> str:
    lines = []
    for i, t in enumerate(tools, 1):
        desc = " ".join((t.description or "").split())
        if len(desc) > MAX_DESCRIPTION:
            desc = desc[: MAX_DESCRIPTION - 3] + "..."
        lines.append(f"{i}. {t.signature}" + (f"\n   {desc}" if desc else ""))
    return "\n".join(lines)


def show_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_results(shown: Sequence[Shown]) -> str:
    lines = []
    for s in shown:
        if s.error is not None:
            lines.append(f"{s.number}. {s.call} -> ERROR: {show_value(s.error, 200)}")
        elif not s.done:
            lines.append(f"{s.number}. {s.call} -> (did not run)")
        else:
            lines.append(f"{s.number}. {s.call} -> {show_value(s.value)}")
    return "\n".join(lines) or "(no results)"


# ---------------------------------------------------------------- planner

_PLANNER = """\
Plan tool calls that answer the question. Calls that do not depend on each other \
run in parallel.

Tools:
{tools}

Write one call per line, `N. tool(arguments)`, numbered from {first}, at most \
{max_tasks} calls. Arguments are literals ("text", numbers, true, false, [lists]) \
or $N, the result of an earlier call N (write ${{N}} inside text). A line \
`Thought: ...` may come before a call. End with `N. join()`."""


def planner_messages(
    question: str,
    tools: Sequence[Tool],
    *,
    examples: Sequence[str] = (),
    first: int = 1,
    max_tasks: int = 9,
    previous: Sequence[Shown] = (),
    reason: str | None = None,
) -> list[Message]:
    """The first plan (no `previous`), or a replan that continues the numbering."""
    system = _PLANNER.format(tools=tool_list(tools), first=first, max_tasks=max_tasks)
    if examples:
        system += "\n\nExamples:\n\n" + "\n\n".join(e.strip() for e in examples)
    user = f"Question: {question}"
    if previous or reason:
        user += (
            "\n\nResults of the previous plan:\n"
            + show_results(previous)
            + f"\n\nThey do not answer the question yet: {reason or 'something is missing'}"
            + f"\nWrite a new plan for what is missing, numbered from {first}."
            + (" You may use the results above as $N." if previous else "")
        )
    return [Message("system", system), Message("user", user)]


def repair_messages(
    question: str,
    tools: Sequence[Tool],
    plan_text: str,
    errors: Sequence[PlanError],
    *,
    valid: Sequence[int],
    first: int,
    examples: Sequence[str] = (),
    max_tasks: int = 9,
) -> list[Message]:
    """Ask for replacements of the lines that had errors, numbered from `first`."""
    messages = planner_messages(question, tools, examples=examples, first=first,
                                max_tasks=max_tasks)
    problems = "\n".join(f"- {e.text or '(empty)'}  <- {e.kind}: {e.message}" for e in errors)
    refs = ", ".join(f"${n}" for n in valid)
    user = (
        f"{messages[1].content}\n\nYour plan so far:\n{plan_text.strip()}\n\n"
        f"These lines had errors and did not run:\n{problems}\n\n"
        f"Write corrected calls for them only, numbered from {first}"
        + (f"; you may use {refs} from the calls that did run." if refs else ".")
        + " End with `N. join()`."
    )
    return [messages[0], Message("user", user)]


# ---------------------------------------------------------------- joiner

JOINER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "thought": {"type": "string", "maxLength": 160},
        "action": {"enum": ["finish", "replan"]},
        "answer": {"type": "string", "minLength": 1, "maxLength": 300},
    },
    "required": ["action", "answer"],
}

FINISH_SCHEMA: dict[str, Any] = {
    **JOINER_SCHEMA,
    "properties": {**JOINER_SCHEMA["properties"], "action": {"enum": ["finish"]}},
}

_JOINER = """\
Answer the question from the results of tool calls. Reply with JSON: \
{{"action": "finish", "answer": <the answer, short>}}{replan}. A "thought" field \
with your reasoning may come first.

Example:
Question: Which is older, the Colosseum or the Pantheon?
Results:
1. search("Colosseum") -> Colosseum: an amphitheatre in Rome, built 70-80 AD.
2. search("Pantheon") -> Pantheon: a temple in Rome, completed about 126 AD.
Reply: {{"action": "finish", "answer": "The Colosseum"}}"""

_REPLAN = """, or, only if a result the answer needs is missing or failed, \
{"action": "replan", "answer": <what is missing>}"""


def joiner_messages(question: str, shown: Sequence[Shown], *, may_replan: bool) -> list[Message]:
    system = _JOINER.format(replan=_REPLAN if may_replan else "")
    user = f"Question: {question}\n\nResults:\n{show_results(shown)}"
    if not may_replan:
        user += "\n\nAnswer now, as well as the results allow."
    return [Message("system", system), Message("user", user)]


# ---------------------------------------------------------------- ReAct

_REACT = """\
Answer the question step by step, using one tool at a time.

Tools:
{tools}

Every reply is exactly two lines:
Thought: <your reasoning>
Action: <one call, e.g. tool("argument")>
When you know the answer, the action is `finish("the answer")`.
After each action you get its result as an Observation."""


def react_messages(
    question: str, tools: Sequence[Tool], steps: Sequence[tuple[str, str]]
) -> list[Message]:
    """`steps` are (model reply, observation) pairs so far."""
    messages = [Message("system", _REACT.format(tools=tool_list(tools))),
                Message("user", f"Question: {question}")]
    for reply, observation in steps:
        messages.append(Message("assistant", reply.strip()))
        messages.append(Message("user", f"Observation: {show_value(observation)}"))
    return messages
