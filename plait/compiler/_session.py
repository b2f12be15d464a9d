"""The state of one question while it is answered, and the one way to call the LLM.

A `Session` holds the run, the model, the tools and everything recorded so far;
the planner, the joiner and the ReAct loop all write into it, and `ask` turns it
into a frozen `Answer` at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait.runtime._engine import NodeError, Run
from plait._errors import InDoubtError
from plait.runtime._graph import Ref
from plait.runtime._tools import Tool
from plait.compiler._parser import ParsedTask, PlanError
from plait.compiler._prompt import Shown, literal_names
from plait.compiler._records import (
    CompilerEvent,
    Decision,
    LLMCall,
    PlanRecord,
    PlanStarted,
    PlanText,
)
from plait.generate._node import (
    CallHooks,
    Reply,
    llm_call_tool,
    llm_policy,
    llm_request,
    submit_call,
)
from plait.llm import LLM, LLMOptionError, Message


@dataclass(slots=True)
class TaskEntry:
    """A dispatched task: its parsed line and its node."""

    task: ParsedTask
    ref: Ref
    plan: int
    round: int
    parsed_at: float  # perf_counter
    call: str


@dataclass(slots=True)
class Step:
    """One ReAct or function-calling reply as it streams: the index of its plan
    record, when it was asked for and when its first text came (perf_counter)."""

    index: int
    started: float
    first: float | None = None


@dataclass(slots=True)
class Session:
    run: Run
    tools: Mapping[str, Tool]
    model: str = ""  # the model's spec: part of every LLM call's identity
    emit: Callable[[CompilerEvent], None] | None = None
    temperature: float | None = 0.0
    llm_timeout: float | None = 120.0
    use_grammar: bool | None = None  # None: try, fall back if the backend refuses
    use_schema: bool | None = None
    # The model, to warm while tools run (None: it does not warm). Its calls go
    # through the run's LLM-call nodes.
    llm: LLM | None = None
    t0: float = field(default_factory=time.perf_counter)
    entries: dict[int, TaskEntry] = field(default_factory=dict)  # by task number
    numbers_seen: set[int] = field(default_factory=set)
    plans: list[PlanRecord] = field(default_factory=list)
    llm_calls: list[LLMCall] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    unresolved: list[PlanError] = field(default_factory=list)
    outcomes: dict[int, tuple[bool, Any]] = field(default_factory=dict)  # number -> (ok, value)
    # The question's speculation (plait.compiler._speculate.Speculation), if asked for.
    speculation: Any = None

    def rel(self, t: float) -> float:
        return t - self.t0

    def send(self, event_type: type[CompilerEvent], *args: Any) -> None:
        if self.emit is not None:
            self.emit(event_type(time.perf_counter(), *args))

    def open_step(self, kind: str, round: int) -> tuple[Step, Callable[[str], bool]]:
        """Announce a step's reply (a plan record of `kind`); its record so far and
        the listener that streams its text to the live view."""
        step = Step(len(self.plans), time.perf_counter())
        self.send(PlanStarted, step.index, kind, round)

        def on_delta(delta: str) -> bool:
            if step.first is None:
                step.first = time.perf_counter()
            self.send(PlanText, step.index, delta)
            return False

        return step, on_delta

    @property
    def next_number(self) -> int:
        return max(self.numbers_seen | {0}) + 1

    # ------------------------------------------------------------ results

    async def settle(self, on_outcome: Callable[[], None] | None = None) -> None:
        """Wait until every dispatched task has a value or an error, recording each
        as it comes (then calling `on_outcome`)."""
        async def one(n: int) -> None:
            self.outcomes[n] = await self._outcome(self.entries[n].ref)
            if on_outcome is not None:
                on_outcome()

        pending = [n for n in self.entries if n not in self.outcomes]
        if pending:
            await asyncio.gather(*(one(n) for n in pending))

    @staticmethod
    async def _outcome(ref: Ref) -> tuple[bool, Any]:
        try:
            return True, await ref
        except NodeError as exc:
            stop_if_in_doubt(exc)
            return False, _short_error(exc)

    def shown(self, unfinished: tuple[bool, Any] = (False, "not finished")) -> list[Shown]:
        """The tasks as a prompt shows them; one not finished as `unfinished` says."""
        out = []
        for n in sorted(self.entries):
            entry = self.entries[n]
            ok, value = self.outcomes.get(n, unfinished)
            out.append(Shown(n, entry.call, value if ok else None, None if ok else str(value),
                             tool=entry.task.tool,
                             names=literal_names(entry.call, self.tools.values())))
        return out

    # ------------------------------------------------------------ the LLM

    async def complete(
        self,
        role: str,
        messages: Sequence[Message],
        *,
        on_delta: Callable[[str], bool] | None = None,
        grammar: str | None = None,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> tuple[str, bool]:
        """Stream one call; `on_delta` returns True to end it early (the plan is done).

        Returns the text and whether the grammar/schema was applied. A backend
        that refuses grammars (or schemas) is asked again without, once per session.
        """
        if grammar is not None and self.use_grammar is False:
            grammar = None
        if json_schema is not None and self.use_schema is False:
            json_schema = None
        while True:
            try:
                text = await self._stream(role, messages, on_delta, grammar, json_schema,
                                          max_tokens, stop)
            except LLMOptionError:
                if grammar is not None and self.use_grammar is None:
                    self.use_grammar, grammar = False, None
                    continue
                if json_schema is not None and self.use_schema is None:
                    self.use_schema, json_schema = False, None
                    continue
                raise
            if grammar is not None:
                self.use_grammar = True
            if json_schema is not None:
                self.use_schema = True
            return text, grammar is not None or json_schema is not None

    async def reply(
        self,
        role: str,
        messages: Sequence[Message | list[Any]],
        *,
        tools: Sequence[Mapping[str, Any]],
        on_delta: Callable[[str], bool] | None = None,
        max_tokens: int | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
    ) -> Reply:
        """One call with `tools` (OpenAI function definitions): the reply's text and
        the tool calls the model made. Messages may be request pairs (tool results)."""
        reply: Reply = await self._stream(role, messages, on_delta, None, None, max_tokens,
                                          None, tools=tools, tool_choice=tool_choice,
                                          parallel_tool_calls=parallel_tool_calls)
        return reply

    async def _stream(
        self,
        role: str,
        messages: Sequence[Message | list[Any]],
        on_delta: Callable[[str], bool] | None,
        grammar: str | None,
        json_schema: dict[str, Any] | None,
        max_tokens: int | None,
        stop: Sequence[str] | None,
        **tool_options: Any,
    ) -> Any:
        """One LLM call, as an LLM-call node of the run (plait.generate's node):
        journaled like any tool call, so a resumed question replays its plans and
        decisions instead of paying again.

        The request (model, messages, options) is the node's argument, hence its
        identity. `on_delta` cannot be an argument (it is code): it goes with the
        call's hooks. A call that did not run here (replayed from the journal, or
        an identical deterministic call made before) feeds its text to `on_delta`
        line by line, as a stream would have brought it.
        """
        request = llm_request(self.model, messages, stop=stop, max_tokens=max_tokens,
                              temperature=self.temperature, grammar=grammar,
                              json_schema=json_schema, **tool_options)
        hooks = CallHooks(on_delta=on_delta, timeout=self.llm_timeout,
                          timeout_option="llm_timeout")
        call = submit_call(self.run, LLM_TOOLS[role], request, hooks)
        try:
            value = await call.ref
        except NodeError as exc:  # the model's own error, not its echo through the node
            raise exc.__cause__ or exc from None
        text: str = value.text if isinstance(value, Reply) else value
        stats = call.stats()
        if call.replayed:
            if on_delta is not None:
                for line in text.splitlines(keepends=True):
                    if on_delta(line):
                        break
            started = first = end = self.rel(time.perf_counter())
        else:  # the call ended just now (its value was handed over in this loop turn)
            end = self.rel(time.perf_counter())
            started = end - stats["elapsed"]
            first = None if stats["ttft"] is None else started + stats["ttft"]
        # A call shared with an identical one before it cost nothing here: that one paid.
        prompt, completion = ((stats.get("prompt_tokens", 0), stats.get("completion_tokens", 0))
                              if call.fresh else (0, 0))
        self.llm_calls.append(LLMCall(
            role, prompt, completion, started, first, end, stats.get("estimated", True),
            call.replayed, stats.get("finish_reason"),
        ))
        return value

    @property
    def last_call(self) -> LLMCall:
        """The LLM call that ended last (calls of one session run one at a time)."""
        return self.llm_calls[-1]


# One tool per role. The role is the tool's name, so plans, journals and events
# tell the calls apart, and it goes with the call to the model (`role=`), so a
# simulated model's script can answer by role. Not retried: a plan's listener
# has dispatched what it saw, and a stream told again would dispatch it twice.
# The function-calling mode's calls ("caller") dispatch nothing until they end:
# retried as plait.generate's are.
LLM_TOOLS = {role: llm_call_tool(role, llm_policy(retries=0))
             for role in ("planner", "joiner", "react")}
LLM_TOOLS["caller"] = llm_call_tool("caller")
LLM_ROLES = frozenset(LLM_TOOLS)


def stop_if_in_doubt(exc: NodeError) -> None:
    """A task refused on resume because it may have run already is no answer to
    show the joiner: the question stops, as a workflow does, and says which."""
    if isinstance(exc.__cause__, InDoubtError):
        raise exc.__cause__


def _short_error(exc: NodeError) -> str:
    cause = exc.__cause__
    if cause is not None:
        text = str(cause) or type(cause).__name__
        return f"{type(cause).__name__}: {text}" if str(cause) else text
    return str(exc)
