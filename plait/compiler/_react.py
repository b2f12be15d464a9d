"""The ReAct baseline: thought, one action, observation, repeat.

Same tools, same model, same run: each action is a node of the session's run,
so its timings are measured the same way as the compiler's tasks. One LLM call
per step, each sending the whole history again; nothing runs in parallel.
"""

from __future__ import annotations

import re
import time

from plait.runtime._engine import NodeError
from plait._errors import GraphError, ToolArgumentError
from plait.compiler._grammar import Chars, Grammar, Rep, react_grammar, seq
from plait.compiler._parser import ParsedTask, SyntaxProblem, check_arguments, parse_call, refs_in
from plait.compiler._prompt import react_messages
from plait.compiler._records import PlanRecord, TaskDispatched
from plait.compiler._session import Session, TaskEntry, _short_error, stop_if_in_doubt
from plait.llm import LLMTruncated, Message

_ACTION = re.compile(r"Action\s*:\s*(.+)", re.I)
_THOUGHT = re.compile(r"Thought\s*:\s*(.*)", re.I)


def parse_step(text: str) -> tuple[str, str | None]:
    """A ReAct reply -> (thought, action text or None)."""
    thought = ""
    m = _THOUGHT.search(text)
    if m:
        thought = m.group(1).strip()
    m = _ACTION.search(text)
    return thought, (m.group(1).strip() if m else None)


def _finish_grammar() -> str:
    g = Grammar()
    g.define("root", seq("Thought: ", Rep(Chars("\n", negated=True), 1, 160),
                         '\nAction: finish("', Rep(Chars('"\\\n', negated=True), 1, 120),
                         '")'))
    return g.render()


class ReAct:
    def __init__(self, session: Session, *, max_steps: int = 8,
                 max_tokens: int | None = 200) -> None:
        self.session = session
        self.max_steps = max_steps
        self.max_tokens = max_tokens

    async def answer(self, question: str) -> str:
        s = self.session
        tools = list(s.tools.values())
        steps: list[tuple[str, object]] = []
        grammar = react_grammar(tools)
        for step in range(1, self.max_steps + 2):
            last = step > self.max_steps  # out of steps: the model must finish now
            messages = react_messages(question, tools, steps)
            if last:
                messages.append(Message("user", "No more actions: give the final answer now."))
            record, on_delta = s.open_step("react", step - 1)
            index = record.index

            text, constrained = await s.complete(
                "react", messages, on_delta=on_delta,
                grammar=_finish_grammar() if last else grammar,
                max_tokens=self.max_tokens, stop=["\nObservation", "Observation:"],
            )
            written = time.perf_counter()
            # A reply cut at max_tokens counts only if its action came out whole.
            cut = s.last_call.truncated
            thought, action = parse_step(text)
            observation: object
            numbers: tuple[int, ...] = ()
            answer: str | None = None
            if action is None:
                observation = ("ERROR: your reply was cut before its action; write a shorter "
                               "Thought" if cut else
                               "ERROR: no 'Action:' line; write `Action: tool(...)` or finish(...)")
            else:
                try:
                    name, args, kwargs = parse_call(action)
                except SyntaxProblem as exc:
                    name, observation = "", (
                        "ERROR: your reply was cut in the middle of its action; write a "
                        "shorter Thought" if cut else f"ERROR: cannot parse the action: {exc}")
                if name == "finish":
                    answer = str(args[0]) if args else str(next(iter(kwargs.values()), ""))
                elif name:
                    observation, numbers = await self._act(name, args, kwargs, step, index,
                                                           action)
            s.plans.append(PlanRecord(
                index=index, round=step - 1, kind="react", text=text, tasks=numbers,
                errors=(), joined=answer is not None, constrained=constrained,
                started_at=s.rel(record.started),
                first_token_at=None if record.first is None else s.rel(record.first),
                finished_at=s.rel(written),
            ))
            if answer is not None:
                return answer
            if last:
                if cut:  # the fallback below would pass a cut reply off as the answer
                    raise LLMTruncated(
                        f"the last ReAct step from {s.model} was cut (finish_reason "
                        f"{s.last_call.finish_reason!r}) before a whole finish(...): pass a "
                        f"larger max_tokens (now {self.max_tokens}); it began {text[:120]!r}")
                return thought or text.strip()
            steps.append((text, observation))
        return ""  # pragma: no cover - the loop always returns

    async def _act(self, name: str, args: list[object], kwargs: dict[str, object], step: int,
                   index: int, action: str) -> tuple[object, tuple[int, ...]]:
        s = self.session
        tool = s.tools.get(name)
        if tool is None:
            return f"ERROR: no tool {name!r}; tools: {', '.join(s.tools)}", ()
        if refs_in([args, kwargs]):
            return "ERROR: write values, not $N references", ()
        try:
            bound = check_arguments(tool, args, kwargs)
            ref = s.run.submit(tool, bound)
        except (ToolArgumentError, GraphError) as exc:
            return f"ERROR: {exc}", ()
        task = ParsedTask(step, name, bound, (), step, action, action)
        s.entries[step] = TaskEntry(task, ref, index, step - 1, time.perf_counter(), action)
        s.numbers_seen.add(step)
        s.send(TaskDispatched, step, name, action, ref.node, ())
        try:
            value = await ref
        except NodeError as exc:
            stop_if_in_doubt(exc)
            s.outcomes[step] = (False, _short_error(exc))
            return f"ERROR: {_short_error(exc)}", (step,)
        s.outcomes[step] = (True, value)
        return value, (step,)
