"""The driver: a question's trajectory as LLM-call nodes of a run.

A chain is a context's calls in order. Its first call streams the model's text
(a segment) until the format's trigger (a stop string); the parser reads the
block's items; one thread per item starts at once, each a chain of its own over
the parent's context plus its header; when every thread is done, the next
segment continues the joined context, and may fork again.

Identity: a call's request holds its assistant prefix (`prefill`) as a Template
of the earlier calls' nodes and the literal glue between them (headers, closing
tags, the trigger), never as a copy of their text: a thread's key is its
parent's keys plus its header, and k threads do not journal k copies of the
parent. A resumed run makes the same requests, so each is replayed.

Nothing hangs: every call has a timeout and an output bound; a block that cannot
be forked as written (no items, too many, too deep, past max_blocks, a failed
thread, the budget spent) is recorded as a problem and the trajectory continues
sequentially from the text as the model wrote it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.runtime._engine import NodeError, Run
from plait.runtime._graph import Ref, Template
from plait.runtime._tools import Tool
from plait.generate._node import CallHooks, llm_call_tool, request_of, submit_call
from plait.reason import _parser as P
from plait.reason._formats import ForkFormat
from plait.reason._formats import Thread as Joined
from plait.reason._records import Block, Chain, Segment, Thread

Part = str | Ref


@dataclass(frozen=True, slots=True)
class Options:
    """What every call of one reasoning shares."""

    model: str
    messages: tuple[tuple[str, str], ...]
    fork: ForkFormat
    max_tokens: int  # one call's output bound
    budget: int  # completion tokens of the whole trajectory (all calls)
    temperature: float | None
    seed: int | None
    timeout: float | None
    grammars: Mapping[str, str] = field(default_factory=dict)  # by call kind
    # The server continues an assistant prefix (prefill); else each call is re-prompted
    # with its context quoted in a user message (lower fidelity: a model trained on
    # prefix continuation reads a new turn).
    continues: bool = True


QUOTE = ("Continue the following text exactly where it stops. Write only what comes "
         "next, nothing of the text itself:\n\n")


class _State:
    """One reasoning's running counters (shared by every chain of it)."""

    def __init__(self, run: Run, options: Options) -> None:
        self.run = run
        self.options = options
        self.blocks = 0
        self.spent = 0
        self.problems: list[tuple[str, str]] = []
        self.started = time.perf_counter()
        self.cut = False
        self.tools: dict[str, Tool] = {}

    def tool(self, role: str) -> Tool:
        tool = self.tools.get(role)
        if tool is None:
            tool = self.tools[role] = llm_call_tool(role)
        return tool


@dataclass(slots=True)
class _Context:
    """A context under construction: its text, and the same as Template parts."""

    parts: list[Part]
    text: str

    def extended(self, parts: list[Part], text: str) -> _Context:
        return _Context(self.parts + parts, self.text + text)

    def prefill(self) -> Any:
        parts = _merged(self.parts)
        if not parts:
            return None
        if all(type(p) is str for p in parts):
            return "".join(parts)  # type: ignore[arg-type]
        return Template(tuple(parts))


def _merged(parts: list[Part]) -> list[Part]:
    out: list[Part] = []
    for p in parts:
        if type(p) is str:
            if not p:
                continue
            if out and type(out[-1]) is str:
                out[-1] = out[-1] + p  # type: ignore[operator]
                continue
        out.append(p)
    return out


async def drive(run: Run, options: Options) -> tuple[str, Chain, _State]:
    """The whole trajectory: its text, its chain, its counters."""
    state = _State(run, options)
    text, chain, _, _ = await _chain(state, _Context([], ""), depth=0, thread=False)
    return text, chain, state


async def _chain(state: _State, context: _Context, *, depth: int,
                 thread: bool) -> tuple[str, Chain, bool, list[Part]]:
    """Run one chain over `context`; returns the text it added, its record, whether
    a length bound cut it, and its text as Template parts."""
    fork = state.options.fork
    forks = depth < fork.max_depth
    stops = fork.thread_stops(depth) if thread else [fork.trigger]
    items: list[Segment | Block] = []
    added = _Context([], "")
    # Each pass is one call; a degraded block costs one more. Bounded, so a model
    # that opens blocks forever still ends.
    for _ in range(2 * fork.max_blocks + 2):
        remaining = state.options.budget - state.spent
        if remaining <= 0:
            state.problems.append((P.BUDGET, f"{state.spent} tokens spent"))
            return added.text, Chain(tuple(items)), True, added.parts
        whole = context.extended(added.parts, added.text)
        call, value, stats = await _segment(state, whole, stops, thread, remaining)
        finish = stats.get("finish_reason")
        parser = P.parse(fork, value, finish) if (forks or not thread) else None
        opening = parser.block if parser is not None else None
        if opening is None:  # the chain ends here: at its close tag, EOS or a bound
            text = _cut_at(value, stops, finish) if thread else value
            items.append(_record(state, call, text, stats))
            added = added.extended([call] if text == value else [text], text)
            if finish == "length":
                state.cut = True
                if remaining < state.options.max_tokens:  # the budget was its bound
                    state.problems.append((P.BUDGET, f"{state.spent} tokens spent"))
            return added.text, Chain(tuple(items)), finish == "length", added.parts
        seg_text = parser.text  # type: ignore[union-attr]
        items.append(_record(state, call, seg_text, stats))
        if seg_text == value + fork.trigger:
            added = added.extended([call, fork.trigger], seg_text)
        elif seg_text == value:
            added = added.extended([call], seg_text)
        else:  # the server ignored the stop: the text up to the trigger, as written
            added = added.extended([seg_text], seg_text)
        block, joined, cut = await _fork(state, context.extended(added.parts, added.text),
                                         opening, depth)
        items.append(block)
        if joined is not None:
            if fork.join == "results":  # the join rewrites the parent's text (APR)
                new = fork.joined(context.text + added.text, _joined(block))
                added = _Context([new[len(context.text):]], new[len(context.text):]) \
                    if new.startswith(context.text) else _Context([new], new)
            else:
                added = added.extended(*joined)
        if cut:
            state.cut = True
            if fork.closing:
                added = added.extended([fork.closing], fork.closing)
            return added.text, Chain(tuple(items)), True, added.parts
    state.problems.append((P.TOO_MANY_BLOCKS, f"a chain made {2 * fork.max_blocks + 2} calls"))
    return added.text, Chain(tuple(items)), False, added.parts


async def _fork(state: _State, context: _Context, opening: P.Opening,
                depth: int) -> tuple[Block, tuple[list[Part], str] | None, bool]:
    """Fork one block, or say why not. Returns its record, the join's parts and
    text (None: not forked, continue sequentially), and whether a thread was cut."""
    fork = state.options.fork
    state.blocks += 1
    numbers = opening.numbers
    problems: list[str] = []
    if opening.duplicated:
        problems.append(P.DUPLICATES)  # forked once each, as ThreadWeaver's rollout does
    why = None
    if not numbers:
        why = P.NO_ITEMS
    elif len(numbers) > fork.max_threads:
        why = P.TOO_MANY
    elif depth + 1 > fork.max_depth:
        why = P.TOO_DEEP
    elif state.blocks > fork.max_blocks:
        why = P.TOO_MANY_BLOCKS
    if why is not None:
        problems.append(why)
        state.problems.append((why, f"block {state.blocks}: items {list(numbers)}"))
        return Block(depth, numbers, (), tuple(problems)), None, False
    if opening.duplicated:
        state.problems.append((P.DUPLICATES, f"block {state.blocks}: "
                               f"{[n for n, _ in opening.items]} forked as {list(numbers)}"))
    specs = dict(reversed(opening.items))  # the first spec written for a number
    tasks = [_thread(state, context, n, specs.get(n, ""), depth + 1) for n in numbers]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        for r in failed:
            if not isinstance(r, (NodeError, Exception)):
                raise r
        problems.append(P.THREAD_FAILED)
        state.problems.append((P.THREAD_FAILED, f"block {state.blocks}: {failed[0]}"))
        done = tuple(r for r in results if isinstance(r, Thread))
        return Block(depth, numbers, done, tuple(problems)), None, False
    threads: tuple[Thread, ...] = tuple(results)  # type: ignore[arg-type]
    cut = any(t.cut for t in threads)
    if cut:
        problems.append(P.THREAD_CUT)
        state.problems.append((P.THREAD_CUT, f"block {state.blocks}: "
                               f"{[t.number for t in threads if t.cut]}"))
    block = Block(depth, numbers, threads, tuple(problems))
    return block, _join_parts(fork, threads), cut


async def _thread(state: _State, context: _Context, number: str, spec: str,
                  depth: int) -> Thread:
    fork = state.options.fork
    if fork.context == "isolated":
        base = _Context([spec], spec)
    else:
        header = fork.thread_header(number)
        base = context.extended([header], header)
    text, chain, cut, parts = await _chain(state, base, depth=depth, thread=True)
    return Thread(number, text, chain, cut, spec, tuple(_merged(parts)))


def _joined(block: Block) -> list[Joined]:
    return [Joined(t.number, t.text, t.cut, t.spec) for t in block.threads]


def _join_parts(fork: ForkFormat, threads: tuple[Thread, ...]) -> tuple[list[Part], str]:
    """The join as text (the format's own rule) and as Template parts."""
    text = fork.appended([Joined(t.number, t.text, t.cut, t.spec) for t in threads])
    parts: list[Part] = [fork.lead]
    for k, t in enumerate(threads):
        if k:
            parts.append(fork.sep)
        parts.append(fork.item_join.format(n=t.number))
        parts.extend(t.parts)
        parts.append(fork.cut_close if t.cut else fork.close)
    if not any(t.cut for t in threads):
        parts.append(fork.tail)
    return parts, text


def _cut_at(value: str, stops: list[str], finish: str | None) -> str:
    """A thread's text up to its first stop string (a server that ignored it), less
    a piece of the stop string a server let through as it stopped."""
    cut = [i for s in stops if s and (i := value.find(s)) >= 0]
    if cut:
        return value[: min(cut)]
    if finish in ("stop", None):
        return value[: len(value) - max((P.partial_tail(value, s) for s in stops if s),
                                        default=0)]
    return value


async def _segment(state: _State, context: _Context, stops: list[str], thread: bool,
                   remaining: int) -> tuple[Ref, str, dict[str, Any]]:
    options = state.options
    role = "thread" if thread else "reason"
    kind = "thread" if thread else ("continue" if context.text else "parent")
    messages: list[list[Any]] = [[r, c] for r, c in options.messages]
    prefill = context.prefill()
    if prefill is not None and not options.continues:
        messages.append(["user", Template((QUOTE, *prefill.parts))
                         if isinstance(prefill, Template) else QUOTE + prefill])
    request = request_of(
        options.model, messages, stop=stops,
        max_tokens=min(options.max_tokens, remaining), temperature=options.temperature,
        grammar=options.grammars.get(kind), json_schema=None, seed=options.seed)
    if prefill is not None and options.continues:
        request["prefill"] = prefill
    hooks = CallHooks(timeout=options.timeout)
    call = submit_call(state.run, state.tool(role), request, hooks)
    value = await call.ref
    stats = call.stats()
    state.spent += int(stats.get("completion_tokens") or 0)
    return call.ref, value, stats


def _record(state: _State, ref: Ref, text: str, stats: dict[str, Any]) -> Segment:
    run = state.run
    i = ref.node
    start = run.started_at[i] or state.started
    end = run.finished_at[i] or start
    from plait.generate._node import run_calls

    return Segment(
        node=i, text=text, tokens=int(stats.get("completion_tokens") or 0),
        prompt_tokens=int(stats.get("prompt_tokens") or 0), ttft=stats.get("ttft"),
        start=max(0.0, start - state.started), end=max(0.0, end - state.started),
        finish_reason=stats.get("finish_reason"), replayed=i not in run_calls(run).ran)
