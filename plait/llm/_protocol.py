"""The one small protocol every LLM backend implements, its records and errors.

A backend only writes `_produce(request, meter)`: an async generator of text
deltas that fills in token counts when it can. `BaseLLM` turns that into the
public `stream()` / `complete()` pair, so timing (ttft, total) is measured in
one place and `complete()` is written once.

Tool calling (OpenAI's `tools`): a request may carry function definitions, a
completion the calls the model made (`tool_calls`). A producer reports the calls
it heard in `meter.tool_calls` and yields "" after each fragment of one, so the
stream's ttft counts a reply that is only tool calls.

Prefill: a request's `prefill` is an assistant prefix the model continues (a
reasoning thread continuing its parent's text); the reply is the continuation
only, and the prefix is prompt. A backend that cannot continue one raises
`LLMOptionError` naming the fallback (docs/llm.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

from plait._errors import PlaitError

ROLES = frozenset({"system", "user", "assistant", "tool"})
# The HTTP header that carries a call's `role` to an OpenAI-compatible server
# (ignored by real ones; `plait sim-server` matches script rules on it).
ROLE_HEADER = "X-Plait-Role"
# The role of the calls that probe what a server can do (whether it continues an
# assistant prefix): `plait sim-server` answers them without using its script.
PROBE_ROLE = "plait-probe"
# Finish reasons of a reply that did not end where the model meant it to.
TRUNCATED = frozenset({"length", "content_filter"})


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asked for. `arguments` is the JSON text the
    model wrote (it may not parse: the caller decides what a bad call means)."""

    id: str
    name: str
    arguments: str = "{}"

    def as_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def of(cls, value: ToolCall | Mapping[str, Any]) -> ToolCall:
        """From a ToolCall, or a dict: plait's {id, name, arguments} or OpenAI's
        {id, function: {name, arguments}}; dict arguments are written as JSON."""
        if isinstance(value, ToolCall):
            return value
        fn = value.get("function") or value
        args = fn.get("arguments", "{}")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        return cls(str(value.get("id") or ""), str(fn.get("name") or ""), args)


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    # An assistant message's calls; a tool message's answer is to `tool_call_id`.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float  # from the start of the call to the first non-empty delta
    total_s: float  # from the start of the call to the end of the stream
    finish_reason: str | None = None  # as the backend said: stop | length | ...; None: unknown

    @property
    def truncated(self) -> bool:
        """The reply was cut (at max_tokens, or by a content filter): not a whole answer."""
        return self.finish_reason in TRUNCATED


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """One normalised call: what every backend's `_produce` receives."""

    messages: tuple[Message, ...]
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    grammar: str | None = None
    json_schema: Mapping[str, Any] | None = field(default=None, hash=False)
    # What the call is for, as its caller names it ("planner", "joiner", "react"):
    # never shown to the model; a simulated model's script can match on it.
    role: str | None = None
    # The sampler's seed, for a backend that takes one (None: the backend's own).
    seed: int | None = None
    # OpenAI function definitions ({"type": "function", "function": {...}}), and
    # whether / how the model must call them.
    tools: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)
    tool_choice: str | Mapping[str, Any] | None = field(default=None, hash=False)
    parallel_tool_calls: bool | None = None
    # An assistant prefix the model continues: the reply is only what comes after
    # it. None: a new assistant turn. Part of the call's identity (its text is the
    # prompt's end), and of its prompt tokens.
    prefill: str | None = None

    @property
    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""


# ---------------------------------------------------------------- protocol


@runtime_checkable
class LLMStream(Protocol):
    """An async iterator of text deltas; `usage` is set once it is exhausted (and
    `tool_calls`, on a stream that has it, then holds the calls the model made)."""

    usage: Usage | None

    def __aiter__(self) -> AsyncIterator[str]: ...


@runtime_checkable
class LLM(Protocol):
    spec: str

    def stream(
        self,
        messages: Sequence[Message],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        grammar: str | None = None,
        json_schema: dict | None = None,
        role: str | None = None,
        seed: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        prefill: str | None = None,
    ) -> LLMStream: ...

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        grammar: str | None = None,
        json_schema: dict | None = None,
        role: str | None = None,
        seed: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        prefill: str | None = None,
    ) -> Completion: ...

    async def warm(self, request: Request) -> None: ...

    async def aclose(self) -> None: ...


# ---------------------------------------------------------------- errors


class LLMError(PlaitError):
    """Base class of errors from an LLM backend. `retryable` says whether the
    same call may succeed if made again."""

    retryable: bool = False


class UnknownModelSpec(LLMError, ValueError):
    """A model spec string that names no backend."""


class LLMOptionError(LLMError, ValueError):
    """Options a backend cannot honour (bad grammar, both grammar and schema...)."""


class MissingExtraError(LLMError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, what: str, extra: str):
        self.extra = extra
        super().__init__(f"{what} needs the optional extra: pip install 'plait[{extra}]'")


class LLMConnectionError(LLMError):
    """The connection failed or dropped before the answer was complete."""

    retryable = True


class LLMTimeout(LLMError, TimeoutError):
    """No data between chunks within `read_timeout`, or no whole answer within a
    call's own timeout; the message says which. A TimeoutError too, but never the
    question's own timeout (that one is a bare TimeoutError)."""

    retryable = True


class LLMProtocolError(LLMError):
    """The server broke the protocol (not JSON, a wrong shape, an over-long event...).
    Not retried: a server that sends that once will send it again."""


class LLMTruncated(LLMError):
    """A reply was cut (finish_reason `length`) where a whole one is needed."""


class LLMHTTPError(LLMError):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None):
        self.status = status
        self.retry_after = retry_after
        self.retryable = status == 429 or status >= 500
        super().__init__(f"HTTP {status}: {message}")


# ---------------------------------------------------------------- helpers


def approx_tokens(text: str) -> int:
    """About four characters per token: the usual rule of thumb for English
    BPE vocabularies. Used only where a server or model reports no count."""
    return math.ceil(len(text) / 4) if text else 0


def approx_prompt_tokens(messages: Sequence[Message], prefill: str | None = None) -> int:
    # ~4 tokens of chat-template framing per message, plus the text itself (and the
    # assistant prefix the model continues, which it reads as prompt too).
    return sum(4 + approx_tokens(m.content)
               + sum(approx_tokens(c.name) + approx_tokens(c.arguments) for c in m.tool_calls)
               for m in messages) + approx_tokens(prefill or "")


def _as_message(m: Message | Mapping[str, Any]) -> Message:
    if isinstance(m, Message):
        msg = m
    else:
        calls = tuple(ToolCall.of(c) for c in m.get("tool_calls") or ())
        call_id = m.get("tool_call_id")
        msg = Message(str(m["role"]), str(m.get("content") or ""), calls,
                      None if call_id is None else str(call_id))
    if msg.role not in ROLES:
        raise LLMOptionError(f"message role must be one of {sorted(ROLES)}, got {msg.role!r}")
    if msg.role == "tool" and not msg.tool_call_id:
        raise LLMOptionError("a tool message needs the tool_call_id of the call it answers")
    return msg


def function_tool(definition: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI tool entry: {"type": "function", "function": {name, description,
    parameters}}, from that or from the bare function definition."""
    if definition.get("type") == "function" and isinstance(definition.get("function"), Mapping):
        fn = definition["function"]
    else:
        fn = definition
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        raise LLMOptionError(f"a tool definition needs a name: {dict(definition)!r:.120}")
    return {"type": "function", "function": dict(fn)}


def build_request(
    messages: Sequence[Message | Mapping[str, str]],
    *,
    stop: Sequence[str] | str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    grammar: str | None = None,
    json_schema: Mapping[str, Any] | None = None,
    role: str | None = None,
    seed: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    prefill: str | None = None,
) -> Request:
    msgs = tuple(_as_message(m) for m in messages)
    if not msgs:
        raise LLMOptionError("at least one message is needed")
    if grammar is not None and json_schema is not None:
        raise LLMOptionError("pass either grammar or json_schema, not both")
    if max_tokens is not None and max_tokens < 1:
        raise LLMOptionError(f"max_tokens must be >= 1, got {max_tokens}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise LLMOptionError(f"seed must be a whole number, got {seed!r}")
    if (tool_choice is not None or parallel_tool_calls is not None) and not tools:
        raise LLMOptionError("tool_choice and parallel_tool_calls need tools")
    if tools and (grammar is not None or json_schema is not None):
        raise LLMOptionError("pass either tools or a grammar / json_schema, not both")
    if prefill is not None and not isinstance(prefill, str):
        raise LLMOptionError(f"prefill must be text (an assistant prefix), got {prefill!r:.80}")
    if prefill and tools:
        raise LLMOptionError("pass either tools or a prefill, not both: a continued "
                             "assistant message is text")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    return Request(msgs, tuple(s for s in stops if s), max_tokens, temperature, grammar, json_schema,
                   role, seed, tuple(function_tool(t) for t in tools or ()), tool_choice,
                   parallel_tool_calls, prefill or None)  # "": a new turn, as None


@dataclass(slots=True)
class Meter:
    """Token counts a producer fills in when it learns them (None = unknown)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


class MeteredStream:
    """An `LLMStream` over a producer; measures ttft and total time.

    The call starts when iteration starts. `usage` is set only when the stream
    is exhausted normally; an error or an early `aclose()` leaves it None.
    """

    __slots__ = ("_gen", "_produce", "_request", "tool_calls", "usage")  # one per call

    usage: Usage | None
    tool_calls: tuple[ToolCall, ...]

    def __init__(self, request: Request, produce: Any) -> None:
        self.usage = None
        self.tool_calls = ()
        self._request = request
        self._produce = produce  # Callable[[Request, Meter], AsyncIterator[str]]
        self._gen: Any = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._gen is not None:
            raise RuntimeError("an LLM stream can be iterated only once")
        self._gen = self._run()
        return self._gen

    async def _run(self) -> AsyncIterator[str]:
        meter = Meter()
        start = time.monotonic()
        first: float | None = None
        chars: list[str] = []
        deltas = self._produce(self._request, meter)
        exhausted = False
        try:
            async for delta in deltas:
                if not delta:
                    if first is None and meter.tool_calls:  # a reply of tool calls began
                        first = time.monotonic()
                    continue
                if first is None:
                    first = time.monotonic()
                chars.append(delta)
                yield delta
            exhausted = True
        finally:
            if not exhausted:  # an exhausted producer has closed itself
                await deltas.aclose()
        end = time.monotonic()
        prompt = meter.prompt_tokens
        completion = meter.completion_tokens
        self.tool_calls = tuple(meter.tool_calls)
        if completion is None:
            completion = approx_tokens("".join(chars)) + sum(
                approx_tokens(c.name) + approx_tokens(c.arguments) for c in self.tool_calls)
        self.usage = Usage(
            prompt_tokens=prompt if prompt is not None else approx_prompt_tokens(
                self._request.messages, self._request.prefill),
            completion_tokens=completion,
            ttft_s=(first if first is not None else end) - start,
            total_s=end - start,
            finish_reason=meter.finish_reason,
        )

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BaseLLM:
    """`stream()` and `complete()` for a backend that implements `_produce`."""

    spec: str = ""
    # Too small to answer freely from results: `ask` grounds its prompts (see there).
    small: bool = False
    # `warm` does something (only the in-process model's): callers skip building
    # what it would be handed.
    warms: bool = False

    def _produce(self, request: Request, meter: Meter) -> AsyncIterator[str]:
        raise NotImplementedError

    def _check(self, request: Request) -> None:
        """Reject options this backend cannot honour, before any work starts."""

    def stream(
        self,
        messages: Sequence[Message],
        *,
        stop: Sequence[str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        grammar: str | None = None,
        json_schema: dict | None = None,
        role: str | None = None,
        seed: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        prefill: str | None = None,
    ) -> MeteredStream:
        request = build_request(
            messages,
            stop=stop,
            max_tokens=max_tokens,
            temperature=temperature,
            grammar=grammar,
            json_schema=json_schema,
            role=role,
            seed=seed,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            prefill=prefill,
        )
        self._check(request)
        return MeteredStream(request, self._produce)

    async def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        stream = self.stream(messages, **options)
        parts = [delta async for delta in stream]
        assert stream.usage is not None  # set on normal exhaustion
        return Completion("".join(parts), stream.usage, stream.tool_calls)

    async def warm(self, request: Request) -> None:
        """Prepare for a later call whose prompt begins as `request`'s, up to the end
        of its last message's text (which that call continues), while the model is
        idle; never delays a call. Only the in-process `local` model does anything
        (it evaluates that prompt into its cache); a server's own prefix cache needs
        no help."""
        return None

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}>"
