"""A simulated model: scripted replies streamed with a controlled timing.

Token: one piece of the regex ``\\s*\\S+|\\s+`` -- a word with the whitespace
before it (trailing whitespace is a piece of its own). Prompt tokens are
counted the same way over all message contents.

Timing: piece ``i`` (from 0) is due at ``start + ttft + i / tps`` on the
monotonic clock. Deadlines are absolute, so a late wake-up (a busy event loop)
never pushes the later pieces back; the stream catches up instead. Measured
figures: ttft = time to the first piece; tps = (pieces - 1) / (total - ttft).

Script forms (the ``script=`` option):

- None: every call gets `DEFAULT_REPLY`.
- a str: every call gets that reply.
- a list: strings are a queue (each used once, in order); dicts are rules
  ``{"role": the call's role, "match": regex on the last user message,
  "reply": text, "times": N, "fault": {...}}`` (no "role" or "match" matches
  anything; no "times" = unlimited). The first usable item wins.
- a callable ``f(messages) -> str``, or ``f(messages, role) -> str``.

A rule (or a callable's reply, as a dict ``{"content": ..., "tool_calls": [...]}``)
may answer with ``"tool_calls"``: ``[{"name": "search", "arguments": {...}}, ...]``
(``"id"`` optional). They are streamed after the reply's text, as the OpenAI
API streams them: each call's name is one token, then its arguments' JSON text
token by token (so a call costs the tokens of the JSON a model would write);
the finish reason is then ``tool_calls``. (``max_tokens`` and ``stop`` cut the
text only: a scripted call always arrives whole.)

A call's role is what its caller says it is for (`ask` says "planner",
"joiner" or "react"; over HTTP it comes as the ``X-Plait-Role`` header), so a
script can answer a planner with a plan without knowing how its prompt reads.
- a `pathlib.Path` to a JSON file holding such a list (or one string).

A fault (see `Fault`) makes the call fail the way a real server would.

Capacity (`plait.llm._capacity`, shared with `plait sim-server`): ``slots``,
a shared token rate ``capacity``, reply ``lengths`` drawn from a seeded
distribution, a ``rate_limit`` answered with 429s, and counters (`stats`).
With none of them given, the timing above holds for every call, however many.

Client-side limits, as the OpenAI backend has them (`plait.llm._limits`):
``max_concurrency`` (AIMD on 429/503), ``requests_per_minute``,
``tokens_per_minute``, and ``max_retries`` (default 0: a fault is raised to
the caller, as it always was), so an in-process run behaves like one over HTTP.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plait.llm._capacity import DEFAULT_TPS, DEFAULT_TTFT, Capacity, SimStats, sleep_until
from plait.llm._limits import Limits, Retry, limited
from plait.llm._protocol import (
    BaseLLM,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOptionError,
    Message,
    Meter,
    Request,
    ToolCall,
    approx_prompt_tokens,
)

TOKEN_RE = re.compile(r"\s*\S+|\s+")
DEFAULT_REPLY = "This is a simulated reply from plait's sim backend."
__all__ = ["DEFAULT_TPS", "DEFAULT_TTFT", "SimStats", "sleep_until"]  # re-exported


def split_tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text))


@dataclass(frozen=True, slots=True)
class Fault:
    """How a scripted call fails. At most one kind per fault.

    - ``status`` (+ ``retry_after`` seconds): answer with that HTTP status.
    - ``drop_after=K``: stream K tokens, then drop the connection.
    - ``stall_after=K``: stream K tokens, then send nothing more, ever.
    - ``hang``: never answer at all.
    """

    status: int | None = None
    retry_after: float | None = None
    drop_after: int | None = None
    stall_after: int | None = None
    hang: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fault:
        unknown = set(d) - {"status", "retry_after", "drop_after", "stall_after", "hang"}
        if unknown:
            raise LLMOptionError(f"unknown fault fields {sorted(unknown)}")
        fault = cls(**d)
        kinds = [fault.status is not None, fault.drop_after is not None,
                 fault.stall_after is not None, bool(fault.hang)]
        if sum(kinds) != 1:
            raise LLMOptionError(f"a fault needs exactly one of status, drop_after, "
                                 f"stall_after, hang: {d}")
        return fault


def scripted_calls(items: Any) -> tuple[ToolCall, ...]:
    """A script's tool calls: dicts {name, arguments (a dict or JSON text), id?} or
    ToolCalls. A call without an id gets one from its place and content, so the
    same script gives the same ids (a rerun sends the same messages)."""
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise LLMOptionError(f"sim tool_calls must be a list, got {type(items).__name__}")
    calls = []
    for k, item in enumerate(items):
        if not isinstance(item, (dict, ToolCall)):
            raise LLMOptionError(f"a sim tool call must be a dict with a name, got {item!r:.80}")
        call = ToolCall.of(item)
        if not call.name:
            raise LLMOptionError(f"a sim tool call needs a name: {item!r:.80}")
        if not call.id:
            tag = zlib.crc32(f"{k}|{call.name}|{call.arguments}".encode())
            call = ToolCall(f"call_{k}_{tag:08x}", call.name, call.arguments)
        calls.append(call)
    return tuple(calls)


@dataclass(frozen=True, slots=True)
class Rule:
    reply: str
    match: re.Pattern[str] | None = None
    times: int | None = None  # None = unlimited
    fault: Fault | None = None
    role: str | None = None  # None = a call of any role
    tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    def from_item(cls, item: str | dict[str, Any]) -> Rule:
        if isinstance(item, str):
            return cls(item, times=1)
        unknown = set(item) - {"role", "match", "reply", "times", "fault", "tool_calls"}
        if unknown:
            raise LLMOptionError(f"unknown sim rule fields {sorted(unknown)}")
        match = item.get("match")
        fault = item.get("fault")
        try:
            pattern = re.compile(match) if match is not None else None
        except re.error as e:
            raise LLMOptionError(f"bad sim rule regex {match!r}: {e}") from None
        return cls(
            reply=str(item.get("reply", "")),
            match=pattern,
            times=item.get("times"),
            fault=Fault.from_dict(fault) if fault is not None else None,
            role=None if item.get("role") is None else str(item["role"]),
            tool_calls=scripted_calls(item.get("tool_calls")),
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What one simulated call will do."""

    pieces: tuple[str, ...]
    prompt_tokens: int
    finish_reason: str  # "stop" | "length" | "tool_calls"
    fault: Fault | None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def units(self) -> tuple[tuple[int, str], ...]:
        """What is streamed, one token each: (-1, text piece) for the reply's text,
        then (k, name) and (k, argument pieces...) for its k-th tool call."""
        out = [(-1, p) for p in self.pieces]
        for k, call in enumerate(self.tool_calls):
            out.append((k, call.name))
            out.extend((k, p) for p in split_tokens(call.arguments))
        return tuple(out)

    @property
    def tokens(self) -> int:
        return len(self.pieces) + sum(1 + count_tokens(c.arguments) for c in self.tool_calls)


class SimScript:
    """Picks the reply for each call. Thread-safe; counts rule uses."""

    def __init__(self, source: Any = None) -> None:
        self._fn: Callable[[Sequence[Message], str | None], str] | None = None
        self._rules: list[Rule] = []
        self._used: list[int] = []
        self._lock = threading.Lock()
        if isinstance(source, Path):
            source = read_script(source)
        if source is None:
            source = DEFAULT_REPLY
        if isinstance(source, str):
            self._rules = [Rule(source)]
        elif callable(source):
            self._fn = source if _takes_role(source) else (lambda messages, _role: source(messages))
        elif isinstance(source, list):
            self._rules = [Rule.from_item(item) for item in source]
        else:
            raise LLMOptionError(
                f"sim script must be a str, list, callable or Path, got {type(source).__name__}")
        self._used = [0] * len(self._rules)

    def pick(self, request: Request) -> Rule:
        if self._fn is not None:
            reply = self._fn(request.messages, request.role)
            if isinstance(reply, dict):
                unknown = set(reply) - {"content", "tool_calls"}
                if unknown:
                    raise LLMOptionError(f"a sim script's reply dict has unknown fields "
                                         f"{sorted(unknown)}; it takes content, tool_calls")
                return Rule(str(reply.get("content") or ""),
                            tool_calls=scripted_calls(reply.get("tool_calls")))
            return Rule(str(reply))
        text = request.last_user
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.times is not None and self._used[i] >= rule.times:
                    continue
                if rule.role is not None and rule.role != request.role:
                    continue
                if rule.match is not None and not rule.match.search(text):
                    continue
                self._used[i] += 1
                return rule
        role = f" of a {request.role} call" if request.role else ""
        raise LLMError(f"sim script has no reply left for the last user message{role} "
                       f"{text[:80]!r}")

    def plan(self, request: Request, filler: Callable[[], str | None] | None = None) -> Plan:
        """What the call will do. A rule without reply text gets `filler()` text
        (drawn lengths), if given; a scripted reply keeps its own."""
        rule = self.pick(request)
        reply, finish = rule.reply, "stop"
        if not reply and filler is not None:
            reply = filler() or ""
        cut = [i for s in request.stop if (i := reply.find(s)) >= 0]
        if cut:
            reply = reply[: min(cut)]
        pieces = split_tokens(reply)
        if request.max_tokens is not None and len(pieces) > request.max_tokens:
            pieces, finish = pieces[: request.max_tokens], "length"
        prompt = sum(count_tokens(m.content) + sum(1 + count_tokens(c.arguments)
                                                   for c in m.tool_calls)
                     for m in request.messages)
        # The tools' definitions are part of the prompt a real model reads.
        prompt += sum(count_tokens(json.dumps(t)) for t in request.tools)
        calls = rule.tool_calls
        if calls and finish == "stop":
            finish = "tool_calls"
        return Plan(tuple(pieces), prompt, finish, rule.fault, calls)


def _takes_role(fn: Callable[..., Any]) -> bool:
    """Whether a script function takes the call's role too: f(messages, role)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): f(messages)
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


async def forever() -> None:
    await asyncio.Event().wait()


class SimLLM(BaseLLM):
    """The simulated backend, in-process. Ignores grammar and json_schema:
    the script must supply conforming replies.

    `stats` counts the calls the simulated model saw; `limits` holds the
    client-side limits (`limits.in_flight`, `limits.limit`)."""

    def __init__(self, script: Any = None, *, ttft: float = DEFAULT_TTFT,
                 tps: float = DEFAULT_TPS, spec: str = "sim",
                 slots: int | None = None, capacity: float | None = None,
                 lengths: Any = None, seed: int = 0, rate_limit: float | str | None = None,
                 max_concurrency: int | None = None,
                 requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None,
                 max_retries: int = 0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, stream: bool = True) -> None:
        # stream=False: each reply comes whole when its last token is due (as an
        # OpenAI server's non-streamed answer): the same timing and capacity, far less
        # work per call, for pipelines that make hundreds of calls a second.
        self.stream_replies = stream
        self.capacity = Capacity(ttft=ttft, tps=tps, slots=slots, capacity=capacity,
                                 lengths=lengths, seed=seed, rate_limit=rate_limit)
        if script is None and self.capacity.lengths is not None:
            script = ""  # every reply drawn from `lengths`
        self.script = script if isinstance(script, SimScript) else SimScript(script)
        self.ttft = self.capacity.ttft
        self.tps = self.capacity.tps
        self.spec = spec
        self.limits = Limits(max_concurrency, requests_per_minute, tokens_per_minute)
        self.retry = Retry(max_retries, backoff_s, max_backoff_s)

    @property
    def stats(self) -> SimStats:
        return self.capacity.stats

    def ceiling(self, calls_per_row: float = 1, mean_tokens: float | None = None) -> float:
        """Rows/s this model can serve at most (see `plait.llm._capacity`)."""
        return self.capacity.ceiling(calls_per_row, mean_tokens)

    def _produce(self, request: Request, meter: Meter) -> AsyncIterator[str]:
        # Only a token rate reads the estimate: not worth a walk over the prompt else.
        estimate = (approx_prompt_tokens(request.messages) + (request.max_tokens or 256)
                    if self.limits.rate is not None else 0)
        return limited(lambda: self._attempt(request, meter), meter, limits=self.limits,
                       retry=self.retry, estimate=estimate)

    async def _attempt(self, request: Request, meter: Meter) -> AsyncIterator[str]:
        call = self.capacity.open()  # a 429 beyond rate_limit
        try:
            plan = self.script.plan(request, self.capacity.filler)
            fault = plan.fault
            if fault is not None and fault.hang:
                await forever()
            if fault is not None and fault.status is not None:
                raise LLMHTTPError(fault.status, "simulated fault", retry_after=fault.retry_after)
            await call.admit()
            limit = None if fault is None else (fault.drop_after if fault.drop_after is not None
                                                else fault.stall_after)
            units = plan.units if limit is None else plan.units[:limit]
            calls = plan.tool_calls
            if self.stream_replies or fault is not None:
                async for i in call.pieces(len(units)):
                    k, piece = units[i]
                    if k < 0:
                        yield piece
                        continue
                    if k == len(meter.tool_calls):  # a call's first token: its name
                        meter.tool_calls.append(ToolCall(calls[k].id, piece, ""))
                    else:
                        c = meter.tool_calls[k]
                        meter.tool_calls[k] = ToolCall(c.id, c.name, c.arguments + piece)
                    yield ""
            elif units:
                await call.finish(len(units))
                meter.tool_calls = list(calls)
                yield "".join(plan.pieces)
            if fault is not None and fault.drop_after is not None:
                raise LLMConnectionError(f"simulated drop after {len(units)} tokens")
            if fault is not None and fault.stall_after is not None:
                await forever()
            if not units:
                await sleep_until(call.start + self.ttft)
            meter.tool_calls = list(calls)
            meter.prompt_tokens = plan.prompt_tokens
            meter.completion_tokens = plan.tokens
            call.served(plan.tokens)
        finally:
            call.close()


def read_script(path: Path) -> Any:
    """A script file's JSON; a file that is missing or not JSON is an LLMOptionError
    naming it (a CLI turns that into one `error:` line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LLMOptionError(f"cannot read the sim script {path}: {reason}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise LLMOptionError(
            f"the sim script {path} is not JSON ({exc}); it holds a list of replies and "
            'rules, e.g. ["a reply", {"match": "K2", "reply": "8611 m"}]') from None
