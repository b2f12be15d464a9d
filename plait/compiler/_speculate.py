"""Verified speculation of plan lines: start calls before the planner writes them.

A speculator guesses calls the plan is about to make (`propose(context) ->
candidates`); `Speculation` starts the guesses as speculative calls of the run
(read-only tools only, free slots only: see plait.runtime._speculative) and, when the
planner does write a call, hands the run the guess with the same content key to
adopt. The guarantee is the identity rule: a guess becomes a task only when it IS
that task's call (same tool, same canonical arguments), and until then its value
is seen by nobody (planner, joiner, journal). So an answer is the same with
speculation on or off; only its timing and the wasted guesses differ.

Built-in speculators:
  Siblings   after `search("A")` for a question listing A, B and C, guesses
             `search("B")` and `search("C")`; already while the line reads
             `search("A` (a one-parameter call whose argument so far begins one
             item of the lists alone), guesses `search("A")` too
  Question   opt-in templates (`'search("{}")'`) filled with the question's names,
             guessed before the first line is written
  Draft      a cheaper model writes its own plan for the same prompt; each of its
             lines is a guess
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from plait._errors import OptionError
from plait.runtime._graph import Ref, Template
from plait.runtime._identity import canonical_arguments
from plait.runtime._speculative import DONE, Speculative
from plait.runtime._tools import Tool
from plait.compiler._grammar import _CONNECTORS, _FUNCTION_WORDS, question_names
from plait.compiler._parser import ParsedTask, PlanParser
from plait.compiler._records import GuessStarted, SpeculationStats
from plait.llm import Message

__all__ = ["Candidate", "Context", "Draft", "Question", "Siblings", "Speculator",
           "draft", "question", "speculator_of"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A guessed call: `tool(**arguments)`, literal arguments only."""

    tool: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """What a speculator may look at: the question, the tools, every task parsed so
    far in this question (all plans, in order), and a draft planner's text so far."""

    question: str
    tools: Mapping[str, Tool]
    tasks: tuple[ParsedTask, ...]
    draft: str = ""
    first: int = 1  # the number of the current plan's first task
    partial: str = ""  # the plan line being written, up to the last token


@runtime_checkable
class Speculator(Protocol):
    """One function: the calls worth starting now. Called when a plan starts, after
    every task line, while a line's call has an open string argument, and (for a
    draft) after every delta of the draft. Guesses already made, or already plan
    tasks, are dropped by the caller."""

    def propose(self, context: Context) -> Iterable[Candidate]: ...


# ---------------------------------------------------------------- siblings

# A list ends at a sentence's end or a colon; its items are separated by commas,
# "and", "or", "vs" and option letters such as "(B)".
_SENTENCE = re.compile(r"[.?!:;](?:\s+|$)")
_SEPARATOR = re.compile(r",|\s+(?:and|or|vs\.?|versus)\s+|\(\w\)\s*", re.IGNORECASE)
_QUOTES = " \t\"'\u201c\u201d"
# Words that open a question, not a name ("Are", "Which"); articles belong to names.
_LEAD_WORDS = _FUNCTION_WORDS - {"the", "a", "an"}


def _named(word: str) -> bool:
    return bool(word) and (word[0].isupper() or any(c.isdigit() for c in word))


def _tail_name(text: str) -> str:
    """The name a lead-in ends with: "similar to The Silent Harbor" -> "The Silent
    Harbor" (capitalized words, joined by small connectors)."""
    words = text.split()
    k = len(words)
    while k and (_named(words[k - 1].strip(_QUOTES)) or words[k - 1].lower() in _CONNECTORS):
        k -= 1
    tail = words[k:]
    # "of X" -> "X", "Are The X" -> "The X"; "The X" stays.
    while tail and (tail[0] in _CONNECTORS or tail[0].lower() in _LEAD_WORDS):
        tail = tail[1:]
    return " ".join(tail).strip(_QUOTES)


def _head_name(text: str) -> str:
    """The name a list's last item starts with: "Last Winter films" -> "Last
    Winter" (an item that is not a name stays whole)."""
    words = text.split()
    if not words or not _named(words[0].strip(_QUOTES)):
        return text
    k = 1
    while k < len(words) and (_named(words[k].strip(_QUOTES)) or words[k] in _CONNECTORS):
        k += 1
    while k > 1 and words[k - 1] in _CONNECTORS:
        k -= 1
    return " ".join(words[:k]).strip(_QUOTES)


@functools.lru_cache(maxsize=64)
def question_lists(question: str) -> tuple[tuple[str, ...], ...]:
    """The lists in `question`, each of two or more items, in order (cached: the
    siblings speculator reads them at every token of an open argument)."""
    lists = []
    for sentence in _SENTENCE.split(question):
        parts = [p.strip(_QUOTES) for p in _SEPARATOR.split(sentence)]
        if parts and parts[0]:  # the sentence's lead-in: only the name it ends with
            parts[0] = _tail_name(parts[0])
        if len(parts) > 1 and parts[-1]:  # and its tail: only the name it starts with
            parts[-1] = _head_name(parts[-1])
        items = tuple(dict.fromkeys(p for p in parts if p))
        if len(items) >= 2:
            lists.append(items)
    return tuple(lists)


# A plan line whose call has one argument so far, an open string: `3. search("Th`
# or `3. search(entity="Th` (no escape yet: the text so far is the value so far).
_OPEN_ARGUMENT = re.compile(
    r'\s*\d+\s*\.\s*([A-Za-z_]\w*)\(\s*(?:([A-Za-z_]\w*)\s*=\s*)?"([^"\\]+)$')


@dataclass(frozen=True, slots=True)
class Siblings:
    """After a call with an argument that is an item of a list in the question, the
    same call for each other item of that list; then, for a name, for each name of
    the question's other lists ("similar to A, B. Options: (A) C, (B) D").

    A call of a one-parameter tool is read before it ends: once its argument so far
    begins exactly one item of the lists (`search("The Si` and "The Silent
    Harbor"), that item and its siblings are guessed, the item's own call too,
    which the line adopts when it ends as guessed (and wastes if it does not)."""

    name = "siblings"

    def propose(self, context: Context) -> Iterable[Candidate]:
        lists = question_lists(context.question)
        if not lists:
            return []
        out: list[Candidate] = []
        if context.tasks and not context.tasks[-1].refs:
            task = context.tasks[-1]
            for param, value in task.arguments.items():
                if type(value) is str:
                    out += _siblings(task.tool, task.arguments, param, value, lists, False)
        m = _OPEN_ARGUMENT.match(context.partial)
        if m is not None:
            tool = context.tools.get(m[1])
            param = _one_string_parameter(tool)
            if param is not None and m[2] in (None, param):
                begun = {w for items in lists for w in items if w.startswith(m[3])}
                if len(begun) == 1:
                    out += _siblings(m[1], {}, param, begun.pop(), lists, True)
        return out


def _siblings(tool: str, arguments: Mapping[str, Any], param: str, value: str,
              lists: tuple[tuple[str, ...], ...], itself: bool) -> list[Candidate]:
    own = [items for items in lists if value in items]
    if not own:
        return []
    others = [w for items in own for w in items if w != value]
    if _named(value):
        others += [w for items in lists if items not in own for w in items
                   if _named(w) and w != value]
    return [Candidate(tool, {**arguments, param: w})
            for w in dict.fromkeys(([value] if itself else []) + others)]


def _one_string_parameter(tool: Tool | None) -> str | None:
    """The name of the tool's parameter, if it has one only and it takes a string."""
    if tool is None or not isinstance(tool.parameters, Mapping):
        return None
    props = tool.parameters.get("properties")
    if not isinstance(props, Mapping) or len(props) != 1:
        return None
    (name, schema), = props.items()
    if not isinstance(schema, Mapping) or schema.get("type") != "string":
        return None
    return name


# ---------------------------------------------------------------- question


@dataclass(frozen=True, slots=True)
class Question:
    """Templates (plan calls with `{}` for a name, e.g. `'search("{}")'`) filled
    with each name of the question, guessed before the first line is written.
    Opt-in per tool: only the calls a template names are guessed."""

    templates: tuple[str, ...]
    name = "question"

    def propose(self, context: Context) -> Iterable[Candidate]:
        if context.tasks:
            return []
        out = []
        listed = [w for items in question_lists(context.question) for w in items]
        for name in dict.fromkeys(listed + question_names(context.question)):
            for template in self.templates:
                quoted = json.dumps(name)[1:-1]  # a string literal's contents
                parser = PlanParser(context.tools)
                items = parser.feed(f"1. {template.replace('{}', quoted)}\n")
                out += [Candidate(t.tool, t.arguments) for t in items
                        if isinstance(t, ParsedTask) and not t.refs]
        return out


def question(*templates: str) -> Question:
    """The `question` speculator with these templates: `plait.question('search("{}")')`."""
    if not templates:
        raise ValueError('question() needs at least one template, e.g. \'search("{}")\'')
    for t in templates:
        if "{}" not in t:
            raise ValueError(f"template {t!r} has no {{}} for the question's names")
    return Question(tuple(templates))


# ---------------------------------------------------------------- draft


@dataclass(frozen=True, slots=True)
class Draft:
    """A cheaper planner (`model`: a spec or an LLM object) writes its own plan on
    the same prompt while the real planner writes; each of its lines is a guess.
    Its calls are not the question's: not journaled, counted in `draft_tokens`."""

    model: Any
    max_tokens: int = 400
    name = "draft"

    def propose(self, context: Context) -> Iterable[Candidate]:
        parser = PlanParser(context.tools, first_line=1)
        items = parser.feed(context.draft)
        return [Candidate(t.tool, t.arguments) for t in items
                if isinstance(t, ParsedTask) and not t.refs and t.number >= context.first]


def draft(model: Any, *, max_tokens: int = 400) -> Draft:
    """The `draft` speculator: `ask(..., speculate=plait.draft("openai:small-model"))`."""
    return Draft(model, max_tokens)


def speculator_of(value: Any, templates: Sequence[str] = ()) -> Speculator | None:
    """`ask`'s `speculate=`: None, "siblings", "question" (with the tools module's
    `QUESTION_TEMPLATES`), "draft:MODEL", or a Speculator."""
    if value is None or isinstance(value, Speculator):
        return value
    if value == "siblings":
        return Siblings()
    if value == "question":
        if not templates:
            raise OptionError("speculate='question' needs templates: pass "
                             "speculate=plait.question('search(\"{}\")'), or define "
                             "QUESTION_TEMPLATES in the tools module")
        return question(*templates)
    if isinstance(value, str) and value.startswith("draft:") and len(value) > 6:
        return Draft(value[6:])
    raise OptionError(f"speculate must be None, 'siblings', 'question', 'draft:MODEL' or a "
                     f"speculator (plait.draft(model), plait.question(...)), got {value!r}")


# ---------------------------------------------------------------- the controller


Key = tuple[str, str]  # (tool, canonical arguments): a parentless call's content


class Speculation:
    """One question's speculation: proposes, starts (within `budget` calls), hands
    guesses over for adoption, and cancels and counts what was not adopted."""

    def __init__(self, session: Any, speculator: Speculator, *, question: str,
                 budget: int, llm: Any = None) -> None:
        self.session = session
        self.speculator = speculator
        self.question = question
        self.budget = budget
        self.llm = llm  # the draft's model
        self.calls: dict[Key, Speculative] = {}  # started this plan, by content
        self.spent: list[Speculative] = []  # every call started
        self.pending: list[tuple[Key, Candidate]] = []
        self.proposed: set[Key] = set()
        self.taken: set[Key] = set()  # calls of dispatched tasks
        self.tasks: list[ParsedTask] = []
        self.adopted: dict[int, Speculative] = {}  # task number -> the guess it adopted
        self.unguessed = 0  # tasks of read-only tools with no guess to adopt
        self.draft_text = ""
        self.draft_tokens = 0
        self.first = 1
        self.line = ""  # the plan line being written
        self._draft: asyncio.Task[None] | None = None

    # The planner's hooks, in the order a plan calls them.

    def plan_started(self, messages: Sequence[Message], first: int) -> None:
        self.first = first
        self.draft_text = ""
        self.line = ""
        if isinstance(self.speculator, Draft) and self.llm is not None:
            self._draft = asyncio.get_running_loop().create_task(self._run_draft(messages))
        self._propose()

    def match(self, tool: Tool, arguments: Mapping[str, Any]) -> Speculative | None:
        """The guess a task about to be dispatched may adopt (the run checks identity
        again), and the task's call is no longer worth guessing."""
        key = _key(tool, arguments)
        if key is None:
            return None
        self.taken.add(key)
        spec = self.calls.get(key)
        return spec if spec is not None and spec.adoptable else None

    def dispatched(self, task: ParsedTask, ref: Ref, spec: Speculative | None) -> None:
        if spec is not None and spec.node == ref.node:
            self.adopted[task.number] = spec
        elif self.session.tools[task.tool].policy.speculate:
            self.unguessed += 1
        self.tasks.append(task)
        self._propose()

    def fed(self, delta: str) -> None:
        """A delta of the plan, after its completed calls were dispatched: while a
        line's call has an open string argument, a speculator may guess from it."""
        line = self.line + delta
        self.line = line[line.rfind("\n") + 1:]
        if '"' in self.line and not self.line.endswith('"'):
            self._propose()

    def plan_ended(self) -> None:
        """Guesses no task adopted are cancelled: the plan that could use them is over."""
        if self._draft is not None:
            self._draft.cancel()
        self.pending.clear()
        self.line = ""
        for spec in self.calls.values():
            self.session.run.cancel_speculative(spec)
        self.calls.clear()
        self.proposed.clear()

    async def aclose(self) -> None:
        self.plan_ended()
        if self._draft is not None:
            await asyncio.gather(self._draft, return_exceptions=True)
        tasks = [s.task for s in self.spent if s.task is not None and not s.task.done()]
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def predicted(self) -> dict[int, float]:
        """Task number -> when its guess started, for the tasks whose value a guess
        gave (an adopted guess that failed gave none: its task ran the tool)."""
        return {n: s.started_at for n, s in self.adopted.items() if s.state == DONE}

    def stats(self) -> SpeculationStats:
        """Once every guess has ended (after the run)."""
        hits = self.predicted
        wasted = [s for s in self.spent if not (s.node is not None and s.state == DONE)]
        return SpeculationStats(
            speculator=getattr(self.speculator, "name", type(self.speculator).__name__),
            started=len(self.spent), hits=len(hits),
            misses=self.unguessed + len(self.adopted) - len(hits),
            wasted=len(wasted), wasted_seconds=sum(s.seconds for s in wasted),
            budget=self.budget, draft_tokens=self.draft_tokens,
        )

    # Internals.

    def _propose(self) -> None:
        context = Context(self.question, self.session.tools, tuple(self.tasks),
                          self.draft_text, self.first, self.line)
        tools = self.session.tools
        for c in self.speculator.propose(context):
            tool = tools.get(c.tool)
            if tool is None or not tool.policy.speculate:
                continue  # the one gate is the run's; this saves it the work
            key = _key(tool, c.arguments)
            if key is None or key in self.proposed or key in self.taken:
                continue
            self.proposed.add(key)
            self.pending.append((key, c))
        self._pump()

    def _pump(self, _: Any = None) -> None:
        run, tools = self.session.run, self.session.tools
        while self.pending and len(self.spent) < self.budget:
            key, c = self.pending[0]
            if key in self.taken:
                self.pending.pop(0)
                continue
            spec = run.speculate(tools[c.tool], c.arguments)
            if spec is None:
                return  # no free slot: try again when a guess ends
            self.pending.pop(0)
            self.session.send(GuessStarted, _call_text(c))
            self.calls[key] = spec
            self.spent.append(spec)
            if spec.task is not None:
                spec.task.add_done_callback(self._pump)

    async def _run_draft(self, messages: Sequence[Message]) -> None:
        stream = self.llm.stream(list(messages), stop=["<END_OF_PLAN>"], temperature=0.0,
                                 max_tokens=getattr(self.speculator, "max_tokens", 400),
                                 role="draft")
        seen = 0
        try:
            async for delta in stream:
                self.draft_text += delta
                if self.draft_text.count("\n") > seen or ")" in delta:
                    seen = self.draft_text.count("\n")
                    self._propose()
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing draft costs its guesses, never the question
            return
        finally:
            usage = getattr(stream, "usage", None)
            if usage is not None:
                self.draft_tokens += usage.prompt_tokens + usage.completion_tokens
            close = getattr(stream, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    pass


def _call_text(c: Candidate) -> str:
    """`search("B")`, as a plan line would call it (JSON literals, by keyword when
    there are several arguments)."""
    args = list(c.arguments.items())
    if len(args) == 1:
        return f"{c.tool}({json.dumps(args[0][1])})"
    return f"{c.tool}({', '.join(f'{k}={json.dumps(v)}' for k, v in args)})"


def _key(tool: Tool, arguments: Mapping[str, Any]) -> Key | None:
    """A parentless call's content (None: it has references, or bad arguments)."""
    for v in arguments.values():
        if isinstance(v, (Ref, Template)):
            return None
    try:
        return tool.name, canonical_arguments(tool._checked(arguments), {})
    except Exception:
        return None
