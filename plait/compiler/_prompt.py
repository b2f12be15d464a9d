"""The prompts: planner, repair, replan, joiner and ReAct, built from the tool registry.

Every prompt shows the tools the same way (signature, then the description's
first paragraph), so the planner, the joiner and the ReAct baseline see the
same tools. Values shown back to a model are cut to a bounded length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from plait.runtime._tools import Tool
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
    tool: str = ""
    names: tuple[str, ...] = ()  # its literal text arguments (not enum values): "K2"


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
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = str(int(value))  # 8849.0 -> 8849: what a model (and a person) reads
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


# ---------------------------------------------------------------- examples

_CALL_LINE = re.compile(r"^(\d+\.\s.*?\))\s*->\s*(.*)$")
# Words that say nothing about the kind of question.
_FILLER = frozenset("the a an of is was are were to in on at by for and or it its".split())


@dataclass(frozen=True, slots=True)
class Example:
    """A worked example: `Question: ...`, numbered plan lines (each may end with
    `-> result`), and optionally a last line `Answer: ...`."""

    question: str
    plan: str  # the numbered lines without their results
    results: tuple[tuple[str, str], ...]  # (line without its number, result) per call
    answer: str | None

    @classmethod
    def parse(cls, text: str) -> Example:
        question, answer = "", None
        plan: list[str] = []
        results: list[tuple[str, str]] = []
        for line in text.strip().splitlines():
            line = line.strip()
            if line.startswith("Question:"):
                question = line.removeprefix("Question:").strip()
            elif line.startswith("Answer:"):
                answer = line.removeprefix("Answer:").strip()
            elif m := _CALL_LINE.match(line):
                plan.append(m.group(1))
                results.append((m.group(1).split(". ", 1)[1], m.group(2)))
            elif line:
                plan.append(line)
        return cls(question, "\n".join(plan), tuple(results), answer)

    def as_plan(self) -> str:
        return f"Question: {self.question}\n{self.plan}"


_PLAN_CALL = re.compile(r"^\d+\.\s+(\w+)\(\s*(\S)(.*)$")


def slot_uses(examples: Sequence[str]) -> dict[str, frozenset[str]]:
    """What the worked examples pass as each tool's first argument: a quoted name
    ("name") or something built on results ("computed": `$1`, `"${1} - ${2}"`)."""
    seen: dict[str, set[str]] = {}
    for text in examples:
        for line in Example.parse(text).plan.splitlines():
            m = _PLAN_CALL.match(line.strip())
            if m is None or m.group(1) == "join":
                continue
            head, rest = m.group(2), m.group(3)
            kind = "computed" if head == "$" or "${" in rest.split('"')[0] else "name"
            seen.setdefault(m.group(1), set()).add(kind)
    return {tool: frozenset(kinds) for tool, kinds in seen.items()}


def _features(text: str) -> set[str]:
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _FILLER]
    return set(words) | {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)}


def closest_examples(question: str, examples: Sequence[str], k: int = 3) -> list[Example]:
    """The `k` examples whose questions share the most words and word pairs with
    `question` (ties keep the given order), most similar last: nearest the question,
    where a small model looks."""
    parsed = [Example.parse(e) for e in examples]
    wanted = _features(question)
    ranked = sorted(range(len(parsed)),
                    key=lambda i: (-len(wanted & _features(parsed[i].question)), i))
    return [parsed[i] for i in reversed(ranked[:k])]


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
    n_examples: int = 3,
) -> list[Message]:
    """The first plan (no `previous`), or a replan that continues the numbering.

    Of `examples`, the `n_examples` closest to the question are shown, as plans
    only: their results and answers are for the grounded joiner."""
    system = _PLANNER.format(tools=tool_list(tools), first=first, max_tasks=max_tasks)
    chosen = closest_examples(question, examples, n_examples)
    if chosen:
        system += "\n\nExamples:\n\n" + "\n\n".join(e.as_plan() for e in chosen)
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

FINISH = "Finish: "  # a joiner's reply: this and the answer, or
REPLAN = "Replan: "  # this and what is missing

# One line, no thought: the shortest reply that still says which of the two it is.
# (LLMCompiler's `Action: Finish(...)` is two tokens longer, a JSON object four.)
_JOINER = """\
Answer the question from the results of tool calls. Reply with one line: \
`Finish: <the answer, short>`{replan}."""

_REPLAN = """, or, only if a result the answer needs is missing or failed, \
`Replan: <what is missing>`"""

# A replan written in the joiner's own reply: one LLM call per replan round, not a
# joiner's then a planner's. Its plan is streamed and dispatched like a planner's.
# The tools go by signature only (their descriptions were the planner's to read;
# the results show calls made with them), to keep every joiner prompt short.
_REPLAN_PLAN = """, or, only if a result the answer needs is missing or failed, \
`Replan: <what is missing>` and then the calls that get it, one per line, \
`N. tool(arguments)` numbered from {first} (at most {max_tasks}), ending with \
`N. join()`; $N is the result of call N (${{N}} inside text)"""


def joiner_messages(question: str, shown: Sequence[Shown], *, may_replan: bool,
                    tools: Sequence[Tool] = (), first: int = 1,
                    max_tasks: int = 9) -> list[Message]:
    """The free-form joiner, for capable models. No example answer: a model that
    copies one would answer another question. Given `tools`, a replan carries its
    new plan, numbered from `first`."""
    if not may_replan:
        replan = ""
    elif tools:
        replan = _REPLAN_PLAN.format(first=first, max_tasks=max_tasks)
    else:
        replan = _REPLAN
    system = _JOINER.format(replan=replan)
    if may_replan and tools:
        system += "\n\nTools:\n" + "\n".join(t.signature for t in tools)
    user = f"Question: {question}\n\nResults:\n{show_results(shown)}"
    if not may_replan:
        user += "\n\nAnswer now, as well as the results allow."
    return [Message("system", system), Message("user", user)]


# ---------------------------------------------------------------- grounded joiner

_GROUNDED = """\
Answer the question from the results of tool calls. Reply `Answer: ` and then \
exactly one of the choices."""
MAX_CHOICE = 160  # characters of one result offered as an answer


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


_YEARS = re.compile(r"\b(year|date)s?\b", re.I)


def _extremes(shown: Sequence[Shown]) -> tuple[list[tuple[str, str]], set[int]]:
    """For each tool that returned several different numbers, the calls with the
    highest and the lowest (latest and earliest for years), as
    ("Highest: Mount Everest (8849)", "Mount Everest"), then their difference and
    their sum ("Difference: 238"), and the indexes of the results they stand for."""
    groups: dict[str, list[tuple[float, int]]] = {}
    for i, s in enumerate(shown):
        n = _number(s.value) if s.error is None and s.done else None
        if n is not None:
            groups.setdefault(s.tool or s.call.split("(")[0], []).append((n, i))
    out: list[tuple[str, str]] = []
    covered: set[int] = set()
    for found in groups.values():
        if len(found) > 1 and len({n for n, _ in found}) > 1:
            dated = all(_YEARS.search(shown[i].call) for _, i in found)
            hi, lo = ("Latest", "Earliest") if dated else ("Highest", "Lowest")
            for word, (n, i) in ((hi, max(found)), (lo, min(found))):
                name = shown[i].names[0] if shown[i].names else shown[i].call
                out.append((f"{word}: {name} ({show_value(n)})", name))
            difference = show_value(max(found)[0] - min(found)[0])
            total = show_value(sum(n for n, _ in found))
            out += [(f"Difference: {difference}", difference), (f"Sum: {total}", total)]
            covered.update(i for _, i in found)
    return out, covered


def answer_choices(shown: Sequence[Shown]) -> dict[str, str]:
    """What a grounded answer may be, each choice with the answer it gives: where
    one tool returned several numbers, the highest or the lowest of them, their
    difference or their sum (a small model picks the word that fits the question,
    "taller", "older" or "how much more", far better than it does arithmetic); any
    other result; and where there are no such numbers, a name a call was made with."""
    extremes, covered = _extremes(shown)
    out: dict[str, str] = dict(extremes)
    for i, s in enumerate(shown):
        if s.error is None and s.done and s.value is not None and i not in covered:
            value = show_value(s.value, MAX_CHOICE)
            out.setdefault(value, value)
    if not extremes:
        for s in shown:
            if s.error is None and s.done:
                for name in s.names:
                    out.setdefault(name, name)
    return {c: a for c, a in out.items() if c.strip()}


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def literal_names(call: str, tools: Iterable[Tool]) -> tuple[str, ...]:
    """The quoted text arguments of a call as written, `lookup("K2", "height")` ->
    ("K2",): not enum values (an attribute name is no answer), not templates."""
    closed = {str(v) for t in tools for v in _enum_values(t)}
    return tuple(n for n in _QUOTED.findall(call) if n not in closed and "${" not in n)


def _enum_values(tool: Tool) -> list[Any]:
    params = tool.parameters if isinstance(tool.parameters, dict) else {}
    out: list[Any] = []
    for schema in params.get("properties", {}).values():
        if isinstance(schema, dict):
            out.extend(schema.get("enum", ()))
    return out


def grounded_messages(question: str, shown: Sequence[Shown], tools: Sequence[Tool],
                      examples: Sequence[str] = (), n_examples: int = 3) -> list[Message]:
    """The grounded joiner, for small models: the closest worked examples as earlier
    turns (their results and answers; the grammar keeps their answers from being
    copied), then the question and its results."""
    messages = [Message("system", _GROUNDED)]
    for example in closest_examples(question, examples, n_examples):
        if example.answer is None or not example.results:
            continue
        worked = [Shown(i, call, _read_number(value), tool=call.split("(")[0],
                        names=literal_names(call, tools))
                  for i, (call, value) in enumerate(example.results, 1)]
        choices = answer_choices(worked)
        # The choice that gives the example's answer: "Highest: Rhine (1233)" for "Rhine".
        said = next((c for c, a in choices.items() if a == example.answer), example.answer)
        messages.append(Message("user", _grounded_user(example.question, worked)))
        messages.append(Message("assistant", f"Answer: {said}"))
    messages.append(Message("user", _grounded_user(question, shown)))
    return messages


def _read_number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _grounded_user(question: str, shown: Sequence[Shown]) -> str:
    choices = "\n".join(f"- {c}" for c in answer_choices(shown)) or "(none)"
    return (f"Results:\n{show_results(shown)}\nChoices:\n{choices}\n"
            f"Question: {question}")


# ---------------------------------------------------------------- ReAct

_REACT = """\
Answer the question step by step, using one tool at a time.

Tools:
{tools}

Every reply is exactly two lines:
Thought: <your reasoning>
Action: <one call of a tool above>
When you know the answer, the action is `finish(...)` with the answer in quotes.
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
