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
from collections.abc import AsyncIterator, Callable
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
from plait.llm._tokens import TOKEN_RE, WORD, Tokens, count_words, split_words

DEFAULT_REPLY = "This is a simulated reply from plait's sim backend."
__all__ = ["DEFAULT_TPS", "DEFAULT_TTFT", "TOKEN_RE", "SimStats", "count_tokens",
           "sleep_until", "split_tokens"]  # re-exported
split_tokens = split_words  # the default (word) tokens
count_tokens = count_words


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
    prefill: re.Pattern[str] | None = None  # searched in the call's prefill ("" if none)

    @classmethod
    def from_item(cls, item: str | dict[str, Any]) -> Rule:
        if isinstance(item, str):
            return cls(item, times=1)
        unknown = set(item) - {"role", "match", "prefill", "reply", "times", "fault",
                               "tool_calls"}
        if unknown:
            raise LLMOptionError(f"unknown sim rule fields {sorted(unknown)}")
        fault = item.get("fault")
        return cls(
            reply=str(item.get("reply", "")),
            match=_regex(item.get("match")),
            times=item.get("times"),
            fault=Fault.from_dict(fault) if fault is not None else None,
            role=None if item.get("role") is None else str(item["role"]),
            tool_calls=scripted_calls(item.get("tool_calls")),
            prefill=_regex(item.get("prefill")),
        )

    def fits(self, request: Request) -> bool:
        if self.role is not None and self.role != request.role:
            return False
        if self.match is not None and not self.match.search(request.last_user):
            return False
        return self.prefill is None or bool(self.prefill.search(request.prefill or ""))


def _regex(text: str | None) -> re.Pattern[str] | None:
    try:
        return re.compile(text) if text is not None else None
    except re.error as e:
        raise LLMOptionError(f"bad sim rule regex {text!r}: {e}") from None


@dataclass(frozen=True, slots=True)
class Plan:
    """What one simulated call will do."""

    pieces: tuple[str, ...]
    prompt_tokens: int
    finish_reason: str  # "stop" | "length" | "tool_calls"
    fault: Fault | None
    tool_calls: tuple[ToolCall, ...] = ()
    tokenizer: Tokens = WORD  # how the tool calls' arguments are cut

    @property
    def units(self) -> tuple[tuple[int, str], ...]:
        """What is streamed, one token each: (-1, text piece) for the reply's text,
        then (k, name) and (k, argument pieces...) for its k-th tool call."""
        out = [(-1, p) for p in self.pieces]
        for k, call in enumerate(self.tool_calls):
            out.append((k, call.name))
            out.extend((k, p) for p in self.tokenizer.split(call.arguments))
        return tuple(out)

    @property
    def tokens(self) -> int:
        count = self.tokenizer.count
        return len(self.pieces) + sum(1 + count(c.arguments) for c in self.tool_calls)


class SimScript:
    """Picks the reply for each call. Thread-safe; counts rule uses."""

    def __init__(self, source: Any = None) -> None:
        self._fn: Callable[[Request], Any] | None = None
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
            self._fn = _script_function(source)
        elif isinstance(source, list):
            self._rules = [Rule.from_item(item) for item in source]
        else:
            raise LLMOptionError(
                f"sim script must be a str, list, callable or Path, got {type(source).__name__}")
        self._used = [0] * len(self._rules)

    def pick(self, request: Request) -> Rule:
        if self._fn is not None:
            reply = self._fn(request)
            if isinstance(reply, dict):
                unknown = set(reply) - {"content", "tool_calls"}
                if unknown:
                    raise LLMOptionError(f"a sim script's reply dict has unknown fields "
                                         f"{sorted(unknown)}; it takes content, tool_calls")
                return Rule(str(reply.get("content") or ""),
                            tool_calls=scripted_calls(reply.get("tool_calls")))
            return Rule(str(reply))
        with self._lock:
            for i, rule in enumerate(self._rules):
                if rule.times is not None and self._used[i] >= rule.times:
                    continue
                if not rule.fits(request):
                    continue
                self._used[i] += 1
                return rule
        role = f" of a {request.role} call" if request.role else ""
        prefill = "" if request.prefill is None else f" (prefill ...{request.prefill[-60:]!r})"
        raise LLMError(f"sim script has no reply left for the last user message{role} "
                       f"{request.last_user[:80]!r}{prefill}")

    def plan(self, request: Request, filler: Callable[[], str | None] | None = None,
             tokens: Tokens = WORD) -> Plan:
        """What the call will do. A rule without reply text gets `filler()` text
        (drawn lengths), if given; a scripted reply keeps its own. `tokens`: how
        the reply is cut into streamed pieces and how the prompt is counted."""
        rule = self.pick(request)
        reply, finish = rule.reply, "stop"
        if not reply and filler is not None:
            reply = filler() or ""
        cut = [i for s in request.stop if (i := reply.find(s)) >= 0]
        if cut:
            reply = reply[: min(cut)]
        pieces = tokens.split(reply)
        if request.max_tokens is not None and len(pieces) > request.max_tokens:
            pieces, finish = pieces[: request.max_tokens], "length"
        calls = rule.tool_calls
        if calls and finish == "stop":
            finish = "tool_calls"
        return Plan(tuple(pieces), prompt_tokens(request, tokens), finish, rule.fault, calls,
                    tokens)


def prompt_tokens(request: Request, tokens: Tokens = WORD) -> int:
    """The prompt's tokens as the sim counts them: the messages' text, their tool
    calls, the tools' definitions (a real model reads them) and the prefill."""
    count = tokens.count
    prompt = sum(count(m.content) + sum(1 + count(c.arguments) for c in m.tool_calls)
                 for m in request.messages)
    prompt += sum(count(json.dumps(t)) for t in request.tools)
    return prompt + count(request.prefill or "")


def _script_function(fn: Callable[..., Any]) -> Callable[[Request], Any]:
    """A script function as f(request): it may take f(messages), f(messages, role)
    or f(messages, role, prefill) (or a keyword `prefill`)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): f(messages)
        return lambda r: fn(r.messages)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    star = any(p.kind is p.VAR_POSITIONAL for p in params)
    by_name = any(p.name == "prefill" and p.kind is p.KEYWORD_ONLY for p in params) or any(
        p.kind is p.VAR_KEYWORD for p in params)
    if len(positional) >= 3 or star:
        return lambda r: fn(r.messages, r.role, r.prefill)
    if len(positional) == 2:
        if by_name:
            return lambda r: fn(r.messages, r.role, prefill=r.prefill)
        return lambda r: fn(r.messages, r.role)
    if by_name:
        return lambda r: fn(r.messages, prefill=r.prefill)
    return lambda r: fn(r.messages)


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
                 max_backoff_s: float = 30.0, stream: bool = True,
                 tokens: str = "word") -> None:
        # stream=False: each reply comes whole when its last token is due (as an
        # OpenAI server's non-streamed answer): the same timing and capacity, far less
        # work per call, for pipelines that make hundreds of calls a second.
        self.stream_replies = stream
        self.capacity = Capacity(ttft=ttft, tps=tps, slots=slots, capacity=capacity,
                                 lengths=lengths, seed=seed, rate_limit=rate_limit,
                                 tokens=tokens)
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
        estimate = (approx_prompt_tokens(request.messages, request.prefill)
                    + (request.max_tokens or 256)
                    if self.limits.rate is not None else 0)
        return limited(lambda: self._attempt(request, meter), meter, limits=self.limits,
                       retry=self.retry, estimate=estimate)

    async def _attempt(self, request: Request, meter: Meter) -> AsyncIterator[str]:
        call = self.capacity.open()  # a 429 beyond rate_limit
        try:
            plan = self.script.plan(request, self.capacity.filler, self.capacity.tokens)
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
