"""The one LLM-call node: a tool whose argument is the request, run by the engine.

Every LLM call of plait is a node of a run: `plait.generate`, an `llm_tool`, and
the compiler's planner, joiner and ReAct calls. The request dict (model spec,
messages, decoding options, schema) is the node's argument, hence its content
key: a resumed run replays a finished call from the journal, never paying twice.

The node's tool is named for its role ("planner", "joiner", "react", "generate",
an llm_tool's name), so journals, events and views tell calls apart; the role
goes to the model as `role=` too (a simulated model's script may match on it).

What a call needs that is code or a setting, not identity (a listener on its
deltas, the pydantic class of its schema, its timeout), waits in a run-scoped
map under the node's id (`CallHooks`) until the node's call takes it. What the
call measured (token split, time to first token, elapsed, finish reason) goes
into the node's record (`NodeRecord.extra`, journaled in `Result.extra`).

Tool calling: a request with `tools` (OpenAI function definitions, with
`tool_choice` / `parallel_tool_calls`) has them in its identity, and its value
is a `Reply` (text and the model's tool calls), journaled as a plain dict, so a
replayed call hands back the same calls. Such a conversation's messages carry
dict contents: an assistant's `{"content", "tool_calls"}`, a tool's
`{"tool_call_id", "content"}` (still [role, content] pairs).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from plait.runtime._engine import Run, _current_node, journal_as
from plait._errors import PlaitError
from plait.runtime._graph import Ref
from plait.runtime._identity import _ENCODER, canonical_arguments
from plait.runtime._tools import Tool, ToolPolicy, make_tool
from plait.executors import in_controller
from plait.generate._pool import current_pool
from plait.generate._schema import Checked, SchemaError, check, repair_messages
from plait.llm import LLMError, LLMTimeout, Message, ToolCall
from plait.llm._protocol import approx_prompt_tokens, approx_tokens

# After a listener ends a stream (the plan is done) it is drained for at most this
# many more deltas: a grammar-bound model stops right there, a free one may ramble.
DRAIN_DELTAS = 16
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 2


class _Retryable(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, LLMError) and bool(getattr(obj, "retryable", False))


class RetryableLLMError(LLMError, metaclass=_Retryable):
    """For `ToolPolicy.retry_on`: an LLMError that says the same call may succeed if
    made again (`retryable`: a dropped stream, a timeout, a 429 or 5xx). The error
    decides, not its class: an HTTP 400 and a 503 are both LLMHTTPError."""


def llm_policy(retries: int = DEFAULT_RETRIES) -> ToolPolicy:
    """How LLM-call nodes run. Idempotent: a call cut off by a crash has no effect
    but its cost, so a resume asks again. Read-only (`speculate`): a call's only
    effect is its reply, so one may be started before it is asked for. Retried on
    retryable LLM errors only."""
    return ToolPolicy(retries=retries, retry_on=(RetryableLLMError,), backoff=0.5,
                      idempotent=True, speculate=True)


@dataclass(frozen=True, slots=True)
class Reply:
    """The value of an LLM call made with tools: its text and the calls it asked for."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()

    def journaled(self) -> dict[str, Any]:
        return {"content": self.text,
                "tool_calls": [[c.id, c.name, c.arguments] for c in self.tool_calls]}

    @classmethod
    def revived(cls, value: dict[str, Any]) -> Reply:
        return cls(value["content"], tuple(ToolCall(*c) for c in value["tool_calls"]))


def tool_message(call_id: str, content: str) -> list[Any]:
    """A request's message answering the tool call `call_id`."""
    return ["tool", {"tool_call_id": call_id, "content": content}]


def assistant_message(reply: Reply) -> list[Any]:
    """A request's message repeating a reply that made tool calls."""
    return ["assistant", reply.journaled()]


def _message(role: str, content: Any) -> Message:
    if type(content) is str:
        return Message(role, content)
    if type(content) is dict and role == "tool":
        return Message(role, str(content["content"]), (), str(content["tool_call_id"]))
    if type(content) is dict and role == "assistant" and "tool_calls" in content:
        return Message(role, str(content["content"]),
                       tuple(ToolCall(*c) for c in content["tool_calls"]))
    return Message(role, _text(content))


@dataclass(frozen=True, slots=True)
class CallHooks:
    """What one call needs that is no part of its identity."""

    # Sees each delta; True ends the stream early (the compiler's plan is done).
    on_delta: Callable[[str], bool] | None = None
    schema: type[pydantic.BaseModel] | None = None
    # (schema calls) the last try: an invalid reply is the call's error, not a value
    # for a repair node to fix; `repairs` says how many came before, for that error.
    final: bool = True
    repairs: int = 0
    timeout: float | None = DEFAULT_TIMEOUT
    timeout_option: str = "timeout"  # its name, for the timeout's message


# What most calls need: kept by no run (a node without hooks of its own has these).
DEFAULT_HOOKS = CallHooks()


@dataclass(slots=True)
class Call:
    """A submitted LLM call: its node, and whether this caller made it."""

    ref: Ref
    hooks: CallHooks
    fresh: bool  # a new node (not an identical deterministic call made before)

    @property
    def replayed(self) -> bool:
        """Its value came from the journal, or from an identical call of this run."""
        run = self.ref._run
        return not (self.fresh and run is not None and self.ref.node in run_calls(run).ran)

    def stats(self) -> dict[str, Any]:
        """What the call measured, from its node's record."""
        run = self.ref._run
        assert run is not None
        return run.extra.get(self.ref.node) or {}


class _RunCalls:
    """The LLM calls of one run: their hooks, and their identities so far."""

    __slots__ = ("hooks", "ran", "samples", "shared")

    def __init__(self) -> None:
        self.hooks: dict[int, CallHooks] = {}  # those other than DEFAULT_HOOKS
        self.ran: set[int] = set()  # calls made in this process (not replayed)
        # By tool name, a deterministic request made before -> its call's node (made
        # once per run). Not the Call: its Ref holds the run, which would hold itself.
        self.shared: dict[str, dict[Any, int]] = {}
        # By tool name, a sampled request -> how many samples of it were asked for.
        self.samples: dict[str, dict[str, int]] = {}


_SCOPE = "plait.generate"  # the key of a run's `_RunCalls` in `Run.scoped`


def run_calls(run: Run) -> _RunCalls:
    """The LLM calls of `run`, kept on the run (its hooks hold listeners that hold
    the run: a map beside it would keep every run alive)."""
    calls = run.scoped.get(_SCOPE)
    if calls is None:
        calls = run.scoped[_SCOPE] = _RunCalls()
    return calls


# ---------------------------------------------------------------- the request


def llm_request(
    model: str,
    messages: Sequence[Any],
    *,
    stop: Sequence[str] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = 0.0,
    grammar: str | None = None,
    json_schema: Mapping[str, Any] | None = None,
    seed: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
    prefill: str | None = None,
) -> dict[str, Any]:
    """The request dict: the node's argument, hence its identity.

    Messages are (role, content) pairs; a content may be a Ref or a Template (the
    call then waits for those nodes). Fields added after the first journals
    (seed, sample, tools...) are left out when unset, so earlier requests keep
    their keys.
    """
    request = request_of(model, [_pair(m) for m in messages], stop=stop,
                         max_tokens=max_tokens, temperature=temperature, grammar=grammar,
                         json_schema=json_schema, seed=seed, prefill=prefill)
    if tools:
        request["tools"] = [dict(t) for t in tools]
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
        if parallel_tool_calls is not None:
            request["parallel_tool_calls"] = parallel_tool_calls
    return request


def request_of(model: str, pairs: list[list[Any]], *, stop: Sequence[str] | None,
               max_tokens: int | None, temperature: float | None, grammar: str | None,
               json_schema: Mapping[str, Any] | None, seed: int | None,
               prefill: str | None = None) -> dict[str, Any]:
    """`llm_request` for messages already made [role, content] lists (taken as they
    are: the request holds them)."""
    request: dict[str, Any] = {
        "model": model,
        "messages": pairs,
        "stop": list(stop) if stop else None,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "grammar": grammar,
        "json_schema": dict(json_schema) if json_schema is not None else None,
    }
    if seed is not None:
        request["seed"] = seed
    if prefill:  # the assistant prefix continued ("" is none: a new turn)
        request["prefill"] = prefill
    return request


def _pair(m: Any) -> list[Any]:
    if type(m) is list and len(m) == 2:  # generate's own pairs: the common case, first
        return [m[0], m[1]]
    if isinstance(m, Message):
        if m.tool_call_id is not None:
            return tool_message(m.tool_call_id, m.content)
        if m.tool_calls:
            return assistant_message(Reply(m.content, m.tool_calls))
        return [m.role, m.content]
    if isinstance(m, Mapping):
        return [m["role"], m["content"]]
    role, content = m
    return [role, content]


def submit_call(run: Run, tool: Tool, request: dict[str, Any], hooks: CallHooks,
                *, shared_as: tuple[Any, ...] = (),
                then: Callable[[Call], Call] | None = None) -> Call:
    """Add an LLM-call node to `run` (it starts as soon as its inputs exist).

    A deterministic call (temperature 0) identical to one made before in this run
    is that call: the same node, paid once. Each sampled call (temperature > 0 or
    the server's default) is a sample of its own: the n-th identical one (from 0)
    gets `sample: n` in its request (the first none, so it is the request itself),
    so samples are never collapsed, and each replays on resume.

    `shared_as`: more of what makes a call the same (a schema class, its repairs);
    `then`: what to add after the call's node (its repairs): the call it returns
    stands for the whole.
    """
    calls = run_calls(run)
    canonical = _identity(request, run)
    if request.get("temperature") == 0:
        key = (canonical, *shared_as) if shared_as else canonical
        shared = calls.shared.get(tool.name)
        if shared is None:
            shared = calls.shared[tool.name] = {}
        made = shared.get(key)
        if made is not None:
            return Call(Ref(made, run), calls.hooks.get(made, DEFAULT_HOOKS), fresh=False)
        call = _submit(run, tool, request, hooks, calls)
        if then is not None:
            call = then(call)
        shared[key] = call.ref.node
        return call
    samples = calls.samples.get(tool.name)
    if samples is None:
        samples = calls.samples[tool.name] = {}
    n = samples.get(canonical, 0)
    samples[canonical] = n + 1
    call = _submit(run, tool, {**request, "sample": n} if n else request, hooks, calls)
    return then(call) if then is not None else call


def _identity(request: dict[str, Any], run: Run) -> str:
    """Text equal for two requests exactly when their canonical arguments (their
    nodes' keys, but for occurrence) are equal: which calls of a run are one.

    A request of plain text (no Ref or Template in it: the usual case) is plain
    JSON, so its JSON is that text at a fraction of the cost of the canonical
    form; it never equals a canonical form, which is an object with "request".
    """
    stop = request["stop"]
    if all(type(c) is str for _, c in request["messages"]) and (
            stop is None or all(type(s) is str for s in stop)) and (
            type(request.get("prefill", "")) is str):
        return _ENCODER.encode(request)
    return canonical_arguments({"request": request}, run.key_of)


def _submit(run: Run, tool: Tool, request: dict[str, Any], hooks: CallHooks,
            calls: _RunCalls) -> Call:
    ref = run.submit(tool, {"request": request})
    # Set before the node can start: its task runs at the loop's next turn at soonest.
    if hooks is not DEFAULT_HOOKS:
        calls.hooks[ref.node] = hooks
    return Call(ref, hooks, fresh=True)


# ---------------------------------------------------------------- the node's tool


_TOOLS: dict[tuple[str, ToolPolicy], Tool] = {}
_DEFAULT_TOOLS: dict[str, Tool] = {}  # by name, with `llm_policy()`: every generate call


def llm_call_tool(name: str, policy: ToolPolicy | None = None) -> Tool:
    """The LLM-call tool named `name` (the calls' role), built once per name and
    policy (a tool's schema takes milliseconds to build)."""
    if policy is None:
        tool = _DEFAULT_TOOLS.get(name)
        if tool is None:
            tool = _DEFAULT_TOOLS[name] = llm_call_tool(name, llm_policy())
        return tool
    tool = _TOOLS.get((name, policy))
    if tool is None:
        tool = _TOOLS[(name, policy)] = make_tool(_llm_call, name=name, policy=policy,
                                                  revive=_revive)
    return tool


def _hooks_of(run: Run, i: int) -> CallHooks:
    calls = run.scoped.get(_SCOPE)
    return calls.hooks.get(i, DEFAULT_HOOKS) if calls is not None else DEFAULT_HOOKS


@in_controller  # it streams through the run's pool: it cannot run away from the run
async def _llm_call(request: dict[str, Any]) -> Any:
    """Every LLM-call node runs this: stream the request through the run's pool."""
    current = _current_node.get()
    assert current is not None, "LLM-call nodes run only inside a plait run"
    run, i = current
    calls = run_calls(run)
    calls.ran.add(i)
    hooks = calls.hooks.get(i, DEFAULT_HOOKS)
    messages = request["messages"]
    bad = request.get("repair")
    if bad is not None:  # a repair node: the previous try's reply and verdict
        if bad.error is None:  # it was valid: nothing to repair, nothing to pay
            journal_as(bad.text)
            return bad.value if hooks.final else bad
        messages = repair_messages(messages, bad, request["json_schema"])
    text, calls = await stream_call(run, i, request, messages, hooks)
    if "tools" in request:
        reply = Reply(text, calls)
        journal_as(reply.journaled())
        return reply
    if hooks.schema is None:
        return text
    value = _verdict(check(hooks.schema, text), hooks, request["model"])
    journal_as(text)  # the reply as the model wrote it; `_revive` validates it again
    return value


def _revive(text: Any) -> Any:
    """A journaled LLM call's value: its text, validated again for a schema call."""
    current = _current_node.get()
    assert current is not None
    run, i = current
    if "tools" in run.nodes[i].arguments["request"]:  # a call with tools: a Reply
        return Reply.revived(text)
    if isinstance(text, dict) and isinstance(text.get("text"), str):
        # Journaled before calls were plait.generate's node: {text, tokens, timings}.
        run.extra.setdefault(i, {k: v for k, v in text.items() if k != "text"})
        text = text["text"]
    hooks = _hooks_of(run, i)
    if hooks.schema is None:
        return text
    return _verdict(check(hooks.schema, text), hooks, run.nodes[i].arguments["request"]["model"])


def _verdict(checked: Checked, hooks: CallHooks, model: str) -> Any:
    if not hooks.final:
        return checked  # for the next repair node
    if checked.error is not None:
        assert hooks.schema is not None
        raise SchemaError(model, hooks.schema.__name__, checked.text, checked.error,
                          hooks.repairs)
    return checked.value


# ---------------------------------------------------------------- the stream


async def stream_call(run: Run, i: int, request: dict[str, Any], messages: list[Any],
                      hooks: CallHooks) -> tuple[str, tuple[ToolCall, ...]]:
    """Stream one request through the pool's model; count and record what it cost.
    Returns the reply's text and the tool calls it made."""
    pool = current_pool()
    if pool is None:
        raise PlaitError("an LLM call ran outside plait.run / plait.ask, which open its "
                         "model: run the workflow with plait.run (or enter an LLMPool)")
    model = request["model"]
    llm = pool.get(model)
    msgs = [Message(role, content) if type(content) is str else _message(role, content)
            for role, content in messages]
    seed = request.get("seed")
    tools = request.get("tools")
    # only when set: a backend may not know the options
    options: dict[str, Any] = {} if seed is None else {"seed": seed}
    prefill = request.get("prefill")
    if prefill is not None:
        options["prefill"] = prefill
    if tools:
        options.update(tools=tools, tool_choice=request.get("tool_choice"),
                       parallel_tool_calls=request.get("parallel_tool_calls"))
    stream = llm.stream(msgs, stop=request["stop"], max_tokens=request["max_tokens"],
                        temperature=request["temperature"], grammar=request["grammar"],
                        json_schema=request["json_schema"],
                        role=run.nodes[i].tool,  # the node's role: not part of the request
                        **options)
    on_delta = hooks.on_delta
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    # A listened call (the compiler's plans) records when each line was complete (its
    # last text handed to its listener), in seconds since the node started (the start
    # its result is journaled with): the timeline marks task lines at their dispatch.
    lines: list[float] | None = [] if on_delta is not None else None
    node_start = run.started_at[i] if on_delta is not None else 0.0
    text_at: float | None = None  # when the open line last got text
    done = False
    drained = 0
    deadline: asyncio.Timeout | None = None
    try:
        try:
            async with asyncio.timeout(hooks.timeout) as deadline:
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
                    if on_delta is not None:
                        done = bool(on_delta(delta))
                        at = round(time.perf_counter() - node_start, 4)
                        nl = delta.find("\n")
                        if nl >= 0:
                            # A line is complete with its last text, not its newline
                            # (a plan's task is dispatched at its `)`, a token before).
                            head = at if delta[:nl].strip() or text_at is None else text_at
                            more = delta.count("\n", nl + 1)
                            lines.extend([head] + [at] * more)  # type: ignore[union-attr]
                            text_at = at if delta[delta.rfind("\n") + 1 :].strip() else None
                        elif delta.strip():
                            text_at = at
        finally:
            if getattr(stream, "usage", None) is None:  # not exhausted: close it now
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    await closer()
    except TimeoutError:
        if deadline is None or not deadline.expired():
            raise
        # Said here, or the caller would take it for the question's own timeout.
        server = getattr(llm, "base_url", None)
        name = hooks.timeout_option
        raise LLMTimeout(
            f"an LLM call to {model}{f' at {server}' if server else ''} got no complete "
            f"answer within its {name} of {hooks.timeout:g} s ({len(parts)} deltas came); "
            f"pass {name}= to allow longer"
        ) from None
    end = time.perf_counter()
    text = parts[0] if len(parts) == 1 else "".join(parts)
    usage = getattr(stream, "usage", None)
    calls: tuple[ToolCall, ...] = getattr(stream, "tool_calls", ()) if usage is not None else ()
    if first is None and calls:  # a reply of tool calls only: its stream timed them
        first = started + usage.ttft_s  # type: ignore[union-attr]
    # Why the reply ended, kept with it so a replay knows a cut reply too. A stream
    # closed early (its listener was done) has no usage, and was not cut: None.
    if usage is not None:
        prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens, False
        finish = getattr(usage, "finish_reason", None)
    else:
        prompt, completion = approx_prompt_tokens(msgs, prefill), approx_tokens(text)
        estimated, finish = True, None
    # As add_tokens / add_record would, without looking the node up again.
    run.tokens[i] = run.tokens.get(i, 0) + prompt + completion
    record = {"prompt_tokens": prompt, "completion_tokens": completion, "estimated": estimated,
              "ttft": None if first is None else first - started, "elapsed": end - started,
              "finish_reason": finish}
    if lines:
        record["lines"] = lines
    extra = run.extra.get(i)
    if extra is None:
        run.extra[i] = record
    else:
        extra.update(record)
    return text, calls


def _text(content: Any) -> str:
    """A message's content as text: an upstream node's value may be anything."""
    if isinstance(content, str):
        return content
    if isinstance(content, Checked):
        return content.text
    if isinstance(content, pydantic.BaseModel):
        return content.model_dump_json()
    return json.dumps(content, default=str)
