"""The one small protocol every LLM backend implements, its records and errors.

A backend only writes `_produce(request, meter)`: an async generator of text
deltas that fills in token counts when it can. `BaseLLM` turns that into the
public `stream()` / `complete()` pair, so timing (ttft, total) is measured in
one place and `complete()` is written once.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

from plait._errors import PlaitError

ROLES = frozenset({"system", "user", "assistant"})
# The HTTP header that carries a call's `role` to an OpenAI-compatible server
# (ignored by real ones; `plait sim-server` matches script rules on it).
ROLE_HEADER = "X-Plait-Role"
# Finish reasons of a reply that did not end where the model meant it to.
TRUNCATED = frozenset({"length", "content_filter"})


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


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

    @property
    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""


# ---------------------------------------------------------------- protocol


@runtime_checkable
class LLMStream(Protocol):
    """An async iterator of text deltas; `usage` is set once it is exhausted."""

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
    ) -> Completion: ...

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


def approx_prompt_tokens(messages: Sequence[Message]) -> int:
    # ~4 tokens of chat-template framing per message, plus the text itself.
    return sum(4 + approx_tokens(m.content) for m in messages)


def _as_message(m: Message | Mapping[str, str]) -> Message:
    msg = m if isinstance(m, Message) else Message(str(m["role"]), str(m["content"]))
    if msg.role not in ROLES:
        raise LLMOptionError(f"message role must be one of {sorted(ROLES)}, got {msg.role!r}")
    return msg


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
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    return Request(msgs, tuple(s for s in stops if s), max_tokens, temperature, grammar, json_schema,
                   role, seed)


@dataclass(slots=True)
class Meter:
    """Token counts a producer fills in when it learns them (None = unknown)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class MeteredStream:
    """An `LLMStream` over a producer; measures ttft and total time.

    The call starts when iteration starts. `usage` is set only when the stream
    is exhausted normally; an error or an early `aclose()` leaves it None.
    """

    __slots__ = ("_gen", "_produce", "_request", "usage")  # one per call: no __dict__

    usage: Usage | None

    def __init__(self, request: Request, produce: Any) -> None:
        self.usage = None
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
        self.usage = Usage(
            prompt_tokens=prompt if prompt is not None else approx_prompt_tokens(self._request.messages),
            completion_tokens=completion if completion is not None else approx_tokens("".join(chars)),
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
        )
        self._check(request)
        return MeteredStream(request, self._produce)

    async def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        stream = self.stream(messages, **options)
        parts = [delta async for delta in stream]
        assert stream.usage is not None  # set on normal exhaustion
        return Completion("".join(parts), stream.usage)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}>"
