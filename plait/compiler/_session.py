"""The state of one question while it is answered, and the one way to call the LLM.

A `Session` holds the run, the model, the tools and everything recorded so far;
the planner, the joiner and the ReAct loop all write into it, and `ask` turns it
into a frozen `Answer` at the end.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait._engine import NodeError, Run
from plait._graph import Ref
from plait._tools import Tool
from plait.compiler._parser import ParsedTask, PlanError
from plait.compiler._prompt import Shown
from plait.compiler._records import CompilerEvent, Decision, LLMCall, PlanRecord
from plait.llm import LLMOptionError, Message

# After join() the stream is drained for at most this many more deltas (a
# grammar-bound model stops right there; a free one may ramble on).
DRAIN_DELTAS = 16


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
class Session:
    run: Run
    llm: Any
    tools: Mapping[str, Tool]
    emit: Callable[[CompilerEvent], None] | None = None
    temperature: float | None = 0.0
    llm_timeout: float | None = 120.0
    use_grammar: bool | None = None  # None: try, fall back if the backend refuses
    use_schema: bool | None = None
    t0: float = field(default_factory=time.perf_counter)
    entries: dict[int, TaskEntry] = field(default_factory=dict)  # by task number
    numbers_seen: set[int] = field(default_factory=set)
    plans: list[PlanRecord] = field(default_factory=list)
    llm_calls: list[LLMCall] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    unresolved: list[PlanError] = field(default_factory=list)
    outcomes: dict[int, tuple[bool, Any]] = field(default_factory=dict)  # number -> (ok, value)

    def rel(self, t: float) -> float:
        return t - self.t0

    def send(self, event_type: type[CompilerEvent], *args: Any) -> None:
        if self.emit is not None:
            self.emit(event_type(time.perf_counter(), *args))

    @property
    def next_number(self) -> int:
        return max(self.numbers_seen | {0}) + 1

    # ------------------------------------------------------------ results

    async def settle(self) -> None:
        """Wait until every dispatched task has a value or an error."""
        pending = [n for n in self.entries if n not in self.outcomes]
        if not pending:
            return
        results = await asyncio.gather(
            *(self._outcome(self.entries[n].ref) for n in pending)
        )
        for n, outcome in zip(pending, results, strict=True):
            self.outcomes[n] = outcome

    @staticmethod
    async def _outcome(ref: Ref) -> tuple[bool, Any]:
        try:
            return True, await ref
        except NodeError as exc:
            return False, _short_error(exc)

    def shown(self) -> list[Shown]:
        out = []
        for n in sorted(self.entries):
            entry = self.entries[n]
            ok, value = self.outcomes.get(n, (False, "not finished"))
            out.append(Shown(n, entry.call, value if ok else None, None if ok else str(value)))
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

    async def _stream(
        self,
        role: str,
        messages: Sequence[Message],
        on_delta: Callable[[str], bool] | None,
        grammar: str | None,
        json_schema: dict[str, Any] | None,
        max_tokens: int | None,
        stop: Sequence[str] | None,
    ) -> str:
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        stream = self.llm.stream(
            messages,
            stop=list(stop) if stop else None,
            max_tokens=max_tokens,
            temperature=self.temperature,
            grammar=grammar,
            json_schema=json_schema,
        )
        done = False
        drained = 0
        try:
            async with asyncio.timeout(self.llm_timeout):
                async for delta in stream:
                    if not delta:
                        continue
                    if first is None:
                        first = time.perf_counter()
                    parts.append(delta)
                    if done:
                        drained += 1
                        if drained >= DRAIN_DELTAS:
                            break
                        continue
                    if on_delta is not None and on_delta(delta):
                        done = True
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None and getattr(stream, "usage", None) is None:
                await closer()
        end = time.perf_counter()
        text = "".join(parts)
        usage = getattr(stream, "usage", None)
        if usage is not None:
            prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens, False
        else:
            prompt = sum(4 + math.ceil(len(m.content) / 4) for m in messages)
            completion, estimated = math.ceil(len(text) / 4), True
        self.llm_calls.append(LLMCall(
            role, prompt, completion, self.rel(started),
            None if first is None else self.rel(first), self.rel(end), estimated,
        ))
        return text


def _short_error(exc: NodeError) -> str:
    cause = exc.__cause__
    if cause is not None:
        text = str(cause) or type(cause).__name__
        return f"{type(cause).__name__}: {text}" if str(cause) else text
    return str(exc)
