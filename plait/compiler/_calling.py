"""The function-calling baseline: the model's own (parallel) tool calls.

LLMCompiler's second baseline: the question goes to the model with the tools'
JSON schemas (OpenAI `tools`, `parallel_tool_calls`); each batch of calls it
makes runs at once, as nodes of the session's run, and their results go back as
`tool` messages, until the model answers in text. A call the model got wrong
(an unknown tool, arguments that are not JSON or do not fit the schema) goes
back to it as that call's error: the model may correct it, as it would with a
failing tool.

Each step's LLM call is the one LLM-call node (role "caller"), its request
(messages, tools) its identity and its reply (text and tool calls) its
journaled value, so a resumed question replays every step and every tool call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from plait.runtime._engine import NodeError
from plait._errors import GraphError, ToolArgumentError
from plait.runtime._tools import Tool
from plait.compiler._parser import ParsedTask, check_arguments
from plait.compiler._prompt import show_value
from plait.compiler._records import PlanRecord, TaskDispatched
from plait.compiler._session import Session, TaskEntry, _short_error, stop_if_in_doubt
from plait.generate._node import Reply, assistant_message, tool_message
from plait.llm import LLMTruncated, ToolCall

SYSTEM = ("You answer questions with the tools you are given. Call every tool whose result "
          "you need; calls that do not need each other's results go together, in one turn. "
          "When the results answer the question, reply in text with the answer: no more "
          "tool calls.")
LAST = "No more tool calls: answer the question now from the results above."


def function_definitions(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """The tools as OpenAI function definitions: name, description, JSON schema."""
    return [{"type": "function",
             "function": {"name": t.name, "description": t.description,
                          "parameters": dict(t.parameters)}} for t in tools]


def call_text(call: ToolCall) -> str:
    """A call as the live view and `Answer.tasks` show it: name(arguments JSON)."""
    return f"{call.name}({call.arguments})"


class FunctionCalling:
    def __init__(self, session: Session, *, max_steps: int = 8,
                 max_tokens: int | None = 400) -> None:
        self.session = session
        self.max_steps = max_steps
        self.max_tokens = max_tokens

    async def answer(self, question: str) -> str:
        s = self.session
        definitions = function_definitions(list(s.tools.values()))
        messages: list[Any] = [["system", SYSTEM], ["user", question]]
        for step in range(1, self.max_steps + 2):
            last = step > self.max_steps  # out of steps: the model must answer now
            record, on_delta = s.open_step("tools", step - 1)
            index = record.index

            # On the last step the model may not call a tool (tool_choice "none"),
            # but still sees the tools: the conversation holds calls of them.
            reply: Reply = await s.reply(
                "caller", messages + ([["user", LAST]] if last else []), tools=definitions,
                on_delta=on_delta, max_tokens=self.max_tokens,
                tool_choice="none" if last else None, parallel_tool_calls=None if last else True)
            written = time.perf_counter()
            if record.first is None and s.last_call.first_token_at is not None:
                record.first = s.t0 + s.last_call.first_token_at
            calls = () if last else reply.tool_calls
            numbers = tuple(range(s.next_number, s.next_number + len(calls)))
            results = await asyncio.gather(*(
                self._call(call, number, index, step) for call, number in zip(calls, numbers)))
            text = "\n".join([reply.text.strip()] + [call_text(c) for c in calls]).strip()
            s.plans.append(PlanRecord(
                index=index, round=step - 1, kind="tools", text=text,
                tasks=tuple(n for n, (ran, _) in zip(numbers, results) if ran),
                errors=(), joined=not calls, constrained=False,
                started_at=s.rel(record.started),
                first_token_at=None if record.first is None else s.rel(record.first),
                finished_at=s.rel(written),
            ))
            if not calls:
                if s.last_call.truncated:
                    raise LLMTruncated(
                        f"the answer from {s.model} was cut (finish_reason "
                        f"{s.last_call.finish_reason!r}): pass a larger max_tokens (now "
                        f"{self.max_tokens}); it began {reply.text[:120]!r}")
                return reply.text
            messages.append(assistant_message(reply))
            messages.extend(tool_message(c.id, result) for c, (_, result) in zip(calls, results))
        return ""  # pragma: no cover - the last step has no calls

    async def _call(self, call: ToolCall, number: int, index: int, step: int
                    ) -> tuple[bool, str]:
        """Run one call as a node of the run: (whether a node ran, what the model sees)."""
        s = self.session
        tool = s.tools.get(call.name)
        if tool is None:
            return False, f"ERROR: no tool {call.name!r}; tools: {', '.join(s.tools)}"
        try:
            kwargs = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return False, f"ERROR: the arguments of {call.name} are not JSON ({exc})"
        if not isinstance(kwargs, dict):
            return False, f"ERROR: the arguments of {call.name} must be a JSON object"
        try:
            bound = check_arguments(tool, [], kwargs)
            ref = s.run.submit(tool, bound)
        except (ToolArgumentError, GraphError) as exc:
            return False, f"ERROR: {exc}"
        text = call_text(call)
        task = ParsedTask(number, call.name, bound, (), step, text, text)
        s.entries[number] = TaskEntry(task, ref, index, step - 1, time.perf_counter(), text)
        s.numbers_seen.add(number)
        s.send(TaskDispatched, number, call.name, text, ref.node, ())
        try:
            value = await ref
        except NodeError as exc:
            stop_if_in_doubt(exc)
            s.outcomes[number] = (False, _short_error(exc))
            return True, f"ERROR: {_short_error(exc)}"
        s.outcomes[number] = (True, value)
        return True, show_value(value)
