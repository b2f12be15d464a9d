"""The streaming planner: the LLM writes a plan, each line is dispatched at once.

This is LLMCompiler's task-fetching unit folded into the stream: every delta
goes through the incremental parser, and a completed call becomes a node of the
run right away (`run.submit`), at its closing parenthesis. The engine starts it
the moment its inputs are done, so task 1 runs while the model is still writing
task 2. A joiner's replan streams its plan through the same `PlanStream`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from plait._errors import GraphError, ToolArgumentError
from plait.runtime._graph import Ref, Template
from plait.compiler._grammar import Grammar, plan_grammar_tree
from plait.compiler._parser import BAD_ARGUMENTS, ParsedTask, PlanError, PlanParser
from plait.compiler._records import (
    PlanFinished,
    PlanProblem,
    PlanRecord,
    PlanStarted,
    PlanText,
    TaskDispatched,
)
from plait.compiler._session import Session, TaskEntry
from plait.llm import Message


class Planner:
    """Writes plans (first plans, repairs, replans) into a session's run."""

    def __init__(
        self,
        session: Session,
        *,
        max_tasks: int = 9,
        max_tokens: int | None = 400,
        thoughts: bool = True,
        max_string: int = 48,
        spans: list[str] | None = None,
        uses: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self.session = session
        self.max_tasks = max_tasks
        self.max_tokens = max_tokens
        self.thoughts = thoughts
        self.max_string = max_string
        self.spans = spans  # grounded: text arguments quote the question (or hold $N)
        self.uses = uses  # grounded: what each tool's first argument takes

    def grammar_tree(self) -> Grammar:
        """The plan grammar, numbered from the session's next task."""
        s = self.session
        # Calls that failed: a grounded replan cannot write them again.
        failed = [(e.task.tool, dict(e.task.arguments)) for n, e in s.entries.items()
                  if not s.outcomes.get(n, (True, None))[0]]
        return plan_grammar_tree(
            s.tools.values(), first=s.next_number, known=sorted(s.entries),
            max_tasks=self.max_tasks, max_string=self.max_string, thoughts=self.thoughts,
            spans=self.spans, uses=self.uses, failed=failed,
        )

    def grammar(self) -> tuple[str, int]:
        """The plan grammar, and the most tokens a plan under it can take."""
        tree = self.grammar_tree()
        return tree.render(), tree.max_len()

    async def write(self, messages: Sequence[Message], *, kind: str, round: int) -> PlanRecord:
        """Stream one plan from the model, dispatching each task as its call is complete."""
        s = self.session
        stream = self.open(kind, round)
        grammar, bound = self.grammar()
        # Under the grammar a plan ends by itself within `bound` tokens: a smaller
        # limit could only cut it mid-line. Without it, `max_tokens` is the limit.
        max_tokens = None if self.max_tokens is None else max(self.max_tokens, bound)
        if s.speculation is not None:
            s.speculation.plan_started(messages, s.next_number)
        text, constrained = await s.complete(
            "planner", messages, on_delta=stream.feed, grammar=grammar,
            max_tokens=max_tokens, stop=["<END_OF_PLAN>"],
        )
        return stream.close(text, constrained)

    def open(self, kind: str, round: int, *, writer: str = "planner",
             started: float | None = None) -> PlanStream:
        """A plan about to be streamed (by the planner, or by a joiner's reply)."""
        return PlanStream(self, kind, round, writer,
                          time.perf_counter() if started is None else started)

    def _dispatch(
        self, task: ParsedTask, parser: PlanParser, index: int, round: int
    ) -> PlanError | None:
        s = self.session
        tool = s.tools[task.tool]
        params = tool.parameters if isinstance(tool.parameters, Mapping) else {}
        props = params.get("properties", {})
        arguments: dict[str, Any] = {}
        for name, value in task.arguments.items():
            value = to_nodes(value, s.entries)
            schema = props.get(name)
            text_param = isinstance(schema, Mapping) and schema.get("type") == "string"
            if type(value) is Ref and text_param:
                value = Template((value,))  # a text parameter gets the value as text
            arguments[name] = value
        speculation = s.speculation
        guess = None if speculation is None else speculation.match(tool, arguments)
        try:
            ref = s.run.submit(tool, arguments, adopt=guess)
        except (ToolArgumentError, GraphError) as exc:
            parser.reject(task.number)
            return PlanError(task.line, task.number, BAD_ARGUMENTS, str(exc), task.text)
        s.entries[task.number] = TaskEntry(task, ref, index, round, time.perf_counter(), task.call)
        if speculation is not None:
            speculation.dispatched(task, ref, guess)
        s.send(TaskDispatched, task.number, task.tool, task.call, ref.node, task.refs,
               guess is not None and guess.node == ref.node)
        return None


class PlanStream:
    """One plan as it streams in: `feed` each delta (True once the plan has ended at
    its join()), then `close` with the whole text. Every task is dispatched the
    moment the parser completes it. One mechanism for every writer of plans."""

    def __init__(self, planner: Planner, kind: str, round: int, writer: str,
                 started: float) -> None:
        s = self.session = planner.session
        self.planner = planner
        self.kind, self.round, self.writer, self.started = kind, round, writer, started
        self.index = len(s.plans)
        self.parser = PlanParser(s.tools, known=s.entries.keys(), max_tasks=planner.max_tasks)
        self.dispatched: list[int] = []
        self.errors: list[PlanError] = []
        self.first_token: float | None = None
        self.joined_at: float | None = None
        s.send(PlanStarted, self.index, kind, round)

    def _handle(self, items: list[ParsedTask | PlanError]) -> None:
        s = self.session
        for item in items:
            if isinstance(item, ParsedTask):
                problem = self.planner._dispatch(item, self.parser, self.index, self.round)
                if problem is None:
                    self.dispatched.append(item.number)
                    continue
                item = problem
            self.errors.append(item)
            s.send(PlanProblem, item)

    def feed(self, delta: str) -> bool:
        if self.first_token is None:
            self.first_token = time.perf_counter()
        s = self.session
        s.send(PlanText, self.index, delta)
        self._handle(self.parser.feed(delta))
        if s.speculation is not None:
            s.speculation.fed(delta)
        if self.parser.joined and self.joined_at is None:
            self.joined_at = time.perf_counter()
        return self.parser.joined

    def close(self, text: str, constrained: bool) -> PlanRecord:
        s, parser = self.session, self.parser
        self._handle(parser.close())
        s.numbers_seen |= parser.taken | parser.invalid
        finished = self.joined_at if self.joined_at is not None else time.perf_counter()
        record = PlanRecord(
            index=self.index, round=self.round, kind=self.kind, text=text,
            tasks=tuple(self.dispatched), errors=tuple(self.errors), joined=parser.joined,
            constrained=constrained, started_at=s.rel(self.started),
            first_token_at=None if self.first_token is None else s.rel(self.first_token),
            finished_at=s.rel(finished), writer=self.writer,
        )
        s.plans.append(record)
        if s.speculation is not None:
            s.speculation.plan_ended()
        s.send(PlanFinished, self.index, len(self.dispatched), len(self.errors))
        return record


def to_nodes(value: Any, entries: Mapping[int, TaskEntry]) -> Any:
    """Task-number refs in a parsed argument -> refs to the tasks' run nodes."""
    kind = type(value)
    if kind is Ref:
        return entries[value.node].ref
    if kind is Template:
        return Template(tuple(entries[p.node].ref if type(p) is Ref else p for p in value.parts))
    if kind is list:
        return [to_nodes(v, entries) for v in value]
    if kind is tuple:
        return tuple(to_nodes(v, entries) for v in value)
    if kind is dict:
        return {k: to_nodes(v, entries) for k, v in value.items()}
    return value
