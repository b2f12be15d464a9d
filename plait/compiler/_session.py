"""The state of one question while it is answered, and the one way to call the LLM.

A `Session` holds the run, the model, the tools and everything recorded so far;
the planner, the joiner and the ReAct loop all write into it, and `ask` turns it
into a frozen `Answer` at the end.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait._engine import NodeError, Run, _current_node, add_tokens
from plait._errors import InDoubtError
from plait._graph import Ref
from plait._tools import Tool, ToolPolicy, make_tool
from plait.compiler._parser import ParsedTask, PlanError
from plait.compiler._prompt import Shown, literal_names
from plait.compiler._records import CompilerEvent, Decision, LLMCall, PlanRecord
from plait.llm import LLMOptionError, LLMTimeout, Message
from plait.llm._protocol import approx_prompt_tokens, approx_tokens

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


@dataclass(slots=True, weakref_slot=True)  # weak: see _SESSIONS
class Session:
    run: Run
    llm: Any
    tools: Mapping[str, Tool]
    model: str = ""  # the model's spec: part of every LLM call's identity
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
    _listeners: dict[int, Callable[[str], bool] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _SESSIONS[self.run] = weakref.ref(self)

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
            stop_if_in_doubt(exc)
            return False, _short_error(exc)

    def shown(self) -> list[Shown]:
        out = []
        for n in sorted(self.entries):
            entry = self.entries[n]
            ok, value = self.outcomes.get(n, (False, "not finished"))
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
        """One LLM call, as a node of the run: journaled like any tool call, so a
        resumed question replays its plans and decisions instead of paying again.

        The request (model, messages, options) is the node's argument, hence its
        identity. `on_delta` cannot be an argument (it is code), so it waits in
        `_listeners` under the node's id until the node's call takes it; a node
        replayed from the journal never calls, and its text is fed to `on_delta`
        here instead, line by line, as a stream would have brought it.
        """
        request = {
            "model": self.model,
            "messages": [[m.role, m.content] for m in messages],
            "stop": list(stop) if stop else None,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "grammar": grammar,
            "json_schema": json_schema,
        }
        ref = self.run.submit(LLM_TOOLS[role], {"request": request})
        self._listeners[ref.node] = on_delta
        try:
            out = await ref
        except NodeError as exc:  # the model's own error, not its echo through the node
            raise exc.__cause__ or exc from None
        finally:
            replayed = self._listeners.pop(ref.node, _TAKEN) is not _TAKEN
        if "refused" in out:
            raise LLMOptionError(out["refused"])
        text: str = out["text"]
        if replayed:
            if on_delta is not None:
                for line in text.splitlines(keepends=True):
                    if on_delta(line):
                        break
            started = first = end = self.rel(time.perf_counter())
        else:  # the call ended just now (its value was handed over in this loop turn)
            end = self.rel(time.perf_counter())
            started = end - out["elapsed"]
            first = None if out["ttft"] is None else started + out["ttft"]
        self.llm_calls.append(LLMCall(
            role, out["prompt_tokens"], out["completion_tokens"], started, first, end,
            out["estimated"], replayed, out.get("finish_reason"),
        ))
        return text

    @property
    def last_call(self) -> LLMCall:
        """The LLM call that ended last (calls of one session run one at a time)."""
        return self.llm_calls[-1]

    async def _call_llm(self, role: str, request: dict[str, Any], node: int) -> dict[str, Any]:
        """Stream one request; what comes back is journaled as the node's value."""
        on_delta = self._listeners.pop(node, None)
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        messages = [Message(r, c) for r, c in request["messages"]]
        done = False
        drained = 0
        deadline: asyncio.Timeout | None = None
        try:
            stream = self.llm.stream(
                messages,
                stop=request["stop"],
                max_tokens=request["max_tokens"],
                temperature=request["temperature"],
                grammar=request["grammar"],
                json_schema=request["json_schema"],
                role=role,  # not part of the request's identity: the node's tool is the role
            )
            try:
                async with asyncio.timeout(self.llm_timeout) as deadline:
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
        except LLMOptionError as exc:
            # An answer, not a failure: the backend takes no grammar (or schema); the
            # session asks again without. Journaled, so a resume asks the same way.
            return {"refused": str(exc)}
        except TimeoutError:
            if deadline is None or not deadline.expired():
                raise
            # Said here, or the caller would take it for the question's own timeout.
            server = getattr(self.llm, "base_url", None)
            raise LLMTimeout(
                f"an LLM call to {self.model}{f' at {server}' if server else ''} got no "
                f"complete answer within its llm_timeout of {self.llm_timeout:g} s "
                f"({len(parts)} deltas came); pass llm_timeout= to allow longer"
            ) from None
        end = time.perf_counter()
        text = "".join(parts)
        usage = getattr(stream, "usage", None)
        # Why the reply ended, journaled with it so a replay knows a cut reply too. A
        # stream closed early (after join()) has no usage, and was not cut: None.
        finish = getattr(usage, "finish_reason", None)
        if usage is not None:
            prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens, False
        else:
            prompt, completion = approx_prompt_tokens(messages), approx_tokens(text)
            estimated = True
        add_tokens(prompt + completion)
        return {
            "text": text,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "estimated": estimated,
            "ttft": None if first is None else first - started,
            "elapsed": end - started,
            "finish_reason": finish,
        }


_TAKEN = object()  # `_listeners`: the node's call took its listener (it ran)

# The session of each run that answers a question, for its LLM-call nodes. Weak
# both ways: the session holds its run, so a strong value would keep the key, and
# with it every answered question, alive for the life of the process. `ask` holds
# the session until the question ends, which is as long as any node can run.
_SESSIONS: weakref.WeakKeyDictionary[Run, weakref.ref[Session]] = weakref.WeakKeyDictionary()


def _llm_tool(role: str) -> Tool:
    async def _llm_call(request: dict[str, Any]) -> dict[str, Any]:
        """Every LLM-call node runs this: its run's session streams the request."""
        current = _current_node.get()
        assert current is not None, "LLM-call nodes run only inside a session's run"
        run, node = current
        session = _SESSIONS[run]()
        assert session is not None, "an LLM-call node ran after its question ended"
        return await session._call_llm(role, request, node)

    return make_tool(_llm_call, name=role, policy=ToolPolicy(idempotent=True))


# One tool per role, built once (a tool's schema takes milliseconds to build). The
# role is the tool's name, so plans, journals and events tell the calls apart, and
# it goes with the call to the model (`role=`), so a simulated model's script can
# answer by role. Idempotent: a call cut off by a crash has no effect but its
# cost, so a resume simply asks again.
LLM_TOOLS = {role: _llm_tool(role) for role in ("planner", "joiner", "react")}
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
