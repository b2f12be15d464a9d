"""The asyncio driver: carries out the scheduler's actions for one run.

The run is the task group of its nodes: every node task is tracked in `_tasks`
from creation to end, and `execute` returns only once all of them have ended;
cancelling the run cancels and awaits them, and an error in the driver itself
fails the run instead of leaking. (An asyncio.TaskGroup would do the same with a
done-callback per task, the largest cost per node in the 100,000-node fan-out.)
Node errors never escape a node task; they become scheduler events, so one
failing node never loses its siblings' results.

A journal that cannot be written (any JournalError but a value that cannot be
journaled, which is that node's error) or a fault in the driver ends the whole
run at once: the body (it runs in the task of `execute`; that task is cancelled
wherever the body waits, and the cancel taken back when the body ends) and every
node task are cancelled and awaited, and `execute` raises. Going on
would run calls whose intents are not durable or lose results; stopping leaves
the calls without a result in doubt, for the resume to decide.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from typing import Any, overload

from plait.runtime import _events as ev
from plait.runtime._durable import MISS, Durable
from plait._errors import GraphError, InDoubtError, PlaitError, RunError, ToolArgumentError
from plait.runtime._graph import ATOMS, Graph, Node, Ref, map_refs, refs_in, resolve
from plait.runtime._identity import Occurrences, canonical_arguments
from plait.runtime._result import RunResult
from plait.runtime._scheduler import (
    DONE,
    FAILED,
    Cancel,
    Failed,
    OnError,
    Preempt,
    Queued,
    RetryLater,
    RunDone,
    Scheduler,
    Skip,
    Start,
)
from plait.runtime._speculative import CANCELLED, DONE as SPEC_DONE, FAILED as SPEC_FAILED, Speculative
from plait.runtime._tools import Tool, _current_run
from plait.executors import IN_CONTROLLER, Executor, LocalExecutor, RayExecutor, remote_executor
from plait.executors._context import current_node as _current_node
from plait.journal import JournalError, JournalValueError

_current = _current_run  # one variable, owned by _tools so a tool call reads it cheaply

# Seconds a node task may run nodes back to back before it gives the loop a turn.
_TURN = 0.0002


def current_run() -> Run | None:
    """The run whose workflow body is executing in this context, if any."""
    return _current.get()


def add_tokens(count: int) -> None:
    """Inside a tool: count `count` LLM tokens (prompt + completion) to its call.

    They become part of the node's record and of its journaled result, so a run's
    cost survives a crash; a call replayed from the journal keeps its count.
    """
    current = _current_node.get()
    if current is None:
        raise PlaitError("tokens can only be counted inside a tool run by plait")
    run, i = current
    run.tokens[i] = run.tokens.get(i, 0) + count


def add_record(**fields: Any) -> None:
    """Inside a tool: attach fields (JSON values) to its node's record.

    Like tokens, they are part of the node's record (`NodeRecord.extra`) and of its
    journaled result (`Result.extra`), and a call replayed from the journal gets
    them back: what an LLM call measured (ttft, token split) survives a crash.
    """
    current = _current_node.get()
    if current is None:
        raise PlaitError("record fields can only be added inside a tool run by plait")
    if "session" in fields:  # the journal's own field in Result.extra (the lease epoch)
        raise PlaitError("'session' is the journal's own record field; use another name")
    run, i = current
    run.extra.setdefault(i, {}).update(fields)


def journal_as(value: Any) -> None:
    """Inside a tool: journal `value` as the call's result instead of what it returns.

    For a value the journal cannot hold as it is (a pydantic instance): the tool
    journals its JSON form and its `revive` turns that back into the value on
    replay, so a call gives the same type fresh or replayed.
    """
    current = _current_node.get()
    if current is None:
        raise PlaitError("journal_as() is only available inside a tool run by plait")
    run, i = current
    if run.durable is not None:  # nothing is journaled otherwise: nothing to keep
        run.journal_forms[i] = value


def node_key() -> str:
    """Inside a tool: the content key of the call, stable across crash and resume.

    Use it as an idempotency key for side effects (a payment id, a message id).
    """
    current = _current_node.get()
    if current is None:
        raise PlaitError("plait.node_key() is only available inside a tool run by plait")
    run, i = current
    if i < 0:
        raise PlaitError("plait.node_key() is not available in a speculative call: it is not "
                         "a node yet, and a tool that needs an idempotency key is not "
                         "read-only (speculate=True)")
    return run.key_of(i)


class NodeError(PlaitError):
    """Awaiting a node that failed, was skipped or cancelled."""

    def __init__(self, node: int, tool: str, message: str):
        self.node = node
        self.tool = tool
        super().__init__(f"node ${node} ({tool}): {message}")


class Run:
    """The state of one run: its nodes, their values and timings, and the driver."""

    # Slots: a dataset job makes a run per row; without an instance dict a run is one
    # object fewer for the cyclic collector to track while the row is in flight.
    __slots__ = (
        "run_id", "entry", "sched", "listeners", "tracer", "_watched", "_observed", "durable",
        "node_tools", "node_arguments", "node_parents", "nodes", "tools", "values", "added_at",
        "started_at", "finished_at", "errors", "tokens", "extra", "journal_forms", "scoped",
        "graph_ids", "_waiters", "_tasks", "_cancelling", "_timers", "_queued", "executor",
        "_local", "_here", "_max_threads", "_keys", "_loop", "_done", "_host", "_host_cancelled",
        "_fault", "_taker", "_next", "_speculative", "_adopted", "_calls",
    )

    def __init__(
        self,
        *,
        run_id: str | None = None,
        entry: str = "",
        max_concurrency: int | None = None,
        on_error: OnError = "stop",
        max_threads: int = 32,
        listeners: Sequence[ev.Listener] = (),
        seed: int | None = None,
        durable: Durable | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.run_id = run_id or new_run_id()
        self.entry = entry
        self.sched = Scheduler(max_concurrency=max_concurrency, on_error=on_error, seed=seed)
        self.durable = durable
        # A node's parts, by node id; `nodes` makes Node records of them when asked.
        self.node_tools: list[Tool] = []
        self.node_arguments: list[Mapping[str, Any]] = []
        self.node_parents: list[tuple[int, ...]] = []
        self.nodes: Sequence[Node] = _Nodes(self.node_tools, self.node_arguments,
                                            self.node_parents)
        # `listeners` get every event; the per-call ones (added, ready, started,
        # finished) are built only for a listener of the caller's (`_watched`): the
        # tracer, when tracing is on, gets a call's start and end as plain calls
        # instead and reads the rest from the node columns.
        own = tuple(listeners)
        self.listeners, self.tracer = ev.observers_of(self.run_id, entry, own, self.nodes)
        self._watched = bool(own)
        self._observed = self._watched or self.tracer is not None  # one test on the hot path
        self.tools: dict[str, Tool] = {}
        # Per-node columns, indexed by node id (read by RunResult).
        self.values: list[Any] = []
        self.added_at: list[float] = []
        self.started_at: list[float | None] = []
        self.finished_at: list[float | None] = []
        self.errors: dict[int, BaseException] = {}
        self.tokens: dict[int, int] = {}  # LLM tokens a node's calls reported (most: none)
        self.extra: dict[int, dict[str, Any]] = {}  # record fields tools added (add_record)
        self.journal_forms: dict[int, Any] = {}  # what to journal instead of a value (journal_as)
        # State other layers keep for this run, by their own key (plait.generate: its
        # calls' hooks). Held here, so it lives exactly as long as the run.
        self.scoped: dict[str, Any] = {}
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # Sets of node ids as dicts: a dict of ints is not tracked by the cyclic
        # collector (a set always is), and a run per dataset row makes many.
        self._cancelling: dict[int, None] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}  # retries waiting out a backoff
        self._queued: dict[int, None] = {}  # nodes waiting for a slot (tracked for events only)
        # Where tool calls run (plait.executors); by default the run's own local one,
        # which it closes when it ends (an executor it is given is its owner's).
        self._local = LocalExecutor(max_threads) if executor is None else None
        self.executor: Executor = self._local if executor is None else executor
        self._here: LocalExecutor | None = None  # for calls that stay here (`_place`)
        self._max_threads = max_threads
        self._keys: tuple[list[str], Occurrences] | None = None  # computed on demand
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        # The task running `execute` while the workflow body runs in it, and whether
        # `_stop_run` cancelled it (see `_cancel_body`).
        self._host: asyncio.Task[Any] | None = None
        self._host_cancelled = False
        self._fault: BaseException | None = None  # what ends the run early, once set
        self._taker: asyncio.Task[None] | None = None  # may run the next started node
        self._next: int | None = None  # the node handed over to `_taker`
        # Speculative calls by id while they run; adopted ones by the node adopting them.
        self._speculative: dict[int, Speculative] = {}
        self._adopted: dict[int, Speculative] = {}
        self._calls = 0  # speculative call ids handed out

    def key_of(self, i: int) -> str:
        """Node `i`'s content key (see plait.runtime._identity)."""
        if self.durable is not None:
            return self.durable.keys[i]
        if self._keys is None:
            self._keys = ([], Occurrences())
        keys, occurrences = self._keys
        while len(keys) <= i:
            k = len(keys)
            keys.append(occurrences.key(self.node_tools[k].name, self.node_arguments[k],
                                        keys.__getitem__))
        return keys[i]

    # The scheduler's columns, under the names RunResult reads.
    @property
    def state(self) -> bytearray:
        return self.sched.state

    @property
    def attempts(self) -> list[int]:
        return self.sched.attempts

    # ------------------------------------------------------------ adding nodes

    def call(self, tool: Tool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Ref:
        """A tool called inside the workflow body: add a node, start it if it can."""
        return self.submit(tool, tool.bind(args, kwargs))

    def submit(self, tool: Tool, arguments: dict[str, Any],
               adopt: Speculative | None = None) -> Ref:
        """Add a node calling `tool(**arguments)`; Refs and Templates in it are its inputs.

        `adopt`: a speculative call this node becomes, if it is the same call (same
        tool, same canonical arguments) and still adoptable; else it is ignored."""
        for v in arguments.values():
            if type(v) not in ATOMS:
                break
        else:  # only plain values (the common call): nothing to look into
            return self._add(tool, tool._checked(arguments), (), adopt)
        found: list[int] = []
        literal: list[str] = []
        for k, v in arguments.items():
            kind = type(v)
            refs = () if kind in ATOMS else (v,) if kind is Ref else refs_in(v)
            if not refs:
                literal.append(k)
                continue
            for r in refs:
                if r._run is not self:
                    raise GraphError(f"argument {k!r} of {tool.name!r} holds a ref of another run")
                found.append(r.node)
        # Check every value known now, so the error points at the call; values that
        # come from other nodes are checked when the node starts.
        if not found:
            return self._add(tool, tool._checked(arguments), ())
        if literal:
            tool._checked({k: arguments[k] for k in literal}, partial=True)
        parents = tuple(dict.fromkeys(found)) if len(found) > 1 else (found[0],)
        return self._add(tool, arguments, parents)

    def _add(self, tool: Tool, arguments: dict[str, Any], parents: tuple[int, ...],
             adopt: Speculative | None = None) -> Ref:
        name = tool.name
        known = self.tools.get(name)
        if known is not tool:
            if known is not None:
                raise GraphError(f"two different tools are named {name!r} in one run")
            self.tools[name] = tool
        i = len(self.node_tools)
        for p in parents:
            if p >= i:
                raise GraphError(f"reference to ${p}, which is not an earlier node")
        self._append(i, arguments, parents, tool)
        call = None
        # The identity check is here, not in the caller: a speculative value becomes
        # a node's only when the node is the very call that produced it.
        if (adopt is not None and adopt.adoptable and adopt.tool is tool
                and adopt.canonical == canonical_arguments(arguments, {})):
            adopt.node = i
            self._adopted[i] = adopt
            call = adopt.call if adopt.state != SPEC_DONE else None  # still holds a slot
        actions = self.sched.add(i, name, parents, tool.policy, call)
        if actions:
            self._act(actions)
        return Ref(i, self)

    # ------------------------------------------------------------ speculation

    def speculate(self, tool: Tool, arguments: Mapping[str, Any]) -> Speculative | None:
        """Start `tool(**arguments)` before any node asks for it, if the tool is
        read-only (`speculate=True`: the one gate) and a slot is free without
        delaying any node. Not journaled; see plait.runtime._speculative. None: not started."""
        if not tool.policy.speculate or self._loop is None or self._fault is not None:
            return None
        known = self.tools.get(tool.name)
        if known is not None and known is not tool:
            return None
        try:
            checked = tool._checked(arguments)
            canonical = canonical_arguments(checked, {})
        except (ToolArgumentError, TypeError, ValueError):
            return None
        if self.durable is not None and self.durable.has_result(tool.name, canonical):
            return None  # a resumed run replays it: a guess would only cost
        call = self._calls
        if not self.sched.speculate(call, tool.name, tool.policy):
            return None
        self._calls += 1
        spec = Speculative(call, tool, checked, canonical, time.perf_counter())
        self._speculative[call] = spec
        spec.task = self._loop.create_task(self._run_speculative(spec))
        return spec

    def cancel_speculative(self, spec: Speculative) -> None:
        """Cancel a speculative call no node adopted (a no-op once it has ended)."""
        if spec.node is None and spec.task is not None and not spec.task.done():
            spec.state = CANCELLED  # now: a call about to end cancelled is adopted by none
            spec.task.cancel()

    async def _run_speculative(self, spec: Speculative) -> None:
        tool = spec.tool
        # Its context: a tool counting tokens or adding record fields writes them
        # under the call's own (negative) id, moved to its node when adopted.
        _current_node.set((self, ~spec.call))
        try:
            value = await self._call(tool, dict(spec.arguments))
        except asyncio.CancelledError:
            spec.state = CANCELLED
            if spec.node is not None:  # its node is being cancelled: the node's to say
                raise
        except Exception as exc:
            spec.state, spec.error = SPEC_FAILED, exc
        else:
            spec.state, spec.value = SPEC_DONE, value
        finally:
            spec.finished_at = time.perf_counter()
            self._speculative.pop(spec.call, None)
            if spec.node is None:
                self._drop_records(~spec.call)
            actions = self.sched.speculation_ended(spec.call)
            if actions:
                self._act(actions)

    def _drop_records(self, key: int) -> None:
        self.tokens.pop(key, None)
        self.extra.pop(key, None)
        self.journal_forms.pop(key, None)

    async def _adopted_value(self, i: int, spec: Speculative) -> Any:
        """Node `i`'s value from the speculative call it adopted, or `_UNSET` when
        that call failed (the node then runs the tool itself)."""
        if spec.task is not None and not spec.task.done():
            try:
                await spec.task
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the node itself is cancelled
        if spec.state != SPEC_DONE:
            self._drop_records(~spec.call)
            self.started_at[i] = time.perf_counter()
            return _UNSET
        key = ~spec.call
        for column in (self.tokens, self.extra, self.journal_forms):
            if key in column:
                column[i] = column.pop(key)
        return spec.value

    def _append(
        self, i: int, arguments: Mapping[str, Any], parents: tuple[int, ...], tool: Tool
    ) -> None:
        if self.durable is not None:  # first: arguments it cannot journal add no node
            self.durable.add(Node(i, tool.name, arguments, parents))
        self.node_tools.append(tool)
        self.node_arguments.append(arguments)
        self.node_parents.append(parents)
        self.values.append(None)
        t = time.perf_counter()
        self.added_at.append(t)
        self.started_at.append(None)
        self.finished_at.append(None)
        if self._watched:
            self._emit(ev.NodeAdded(self.run_id, t, i, tool.name, parents, arguments))

    def add_graph(self, graph: Graph, tools: dict[str, Tool]) -> None:
        """Add a whole static graph; priorities see all of it before anything starts."""
        graph.validate(tools)
        order = graph.topological()
        renumber: dict[int, int] = {}
        specs = []
        for old in order:
            node = graph.nodes[old]
            tool = tools[node.tool]
            i = len(self.node_tools)
            renumber[old] = i
            arguments = map_refs(dict(node.arguments), lambda r: Ref(renumber[r.node]))
            parents = tuple(renumber[p] for p in node.parents)
            if not parents:
                arguments = tool.validate(arguments)
            self.tools.setdefault(tool.name, tool)
            self._append(i, arguments, parents, tool)
            specs.append((i, tool.name, parents, tool.policy))
        self.graph_ids = [renumber[k] for k in range(len(graph.nodes))]
        self._act(self.sched.add_many(specs))

    # ------------------------------------------------------------ waiting

    def value_of(self, node: int) -> Generator[Any, None, Any]:
        """What `await ref` runs (`Ref.__await__`): node `node`'s value, once it has one.

        An iterator, not a coroutine: awaiting a node costs no coroutine frame, and
        waking the body one level of delegation less."""
        state = self.sched.state[node]
        if state == DONE:
            return _at_once(self.values[node])
        if state < DONE:
            fut = self._waiters.get(node)
            if fut is None:
                fut = self._waiters[node] = asyncio.get_running_loop().create_future()
            return fut.__await__()
        raise self._node_error(node)

    def _node_error(self, node: int) -> NodeError:
        tool = self.node_tools[node].name
        error = self.errors.get(node)
        if self.sched.state[node] == FAILED and error is not None:
            err = NodeError(node, tool, ev.describe(error))
            err.__cause__ = error
            return err
        return NodeError(node, tool, f"did not run ({self.sched.state_name(node)})")

    # ------------------------------------------------------------ actions

    def _act(self, actions: list[Any]) -> None:
        for a in actions:
            kind = type(a)
            if kind is Start:
                self._launch(a.node, a.attempt)
            elif kind is Queued:
                if self._watched:
                    self._queued[a.node] = None
                    self._emit_node(ev.NodeReady, a.node)
            elif kind is RetryLater:
                assert self._loop is not None
                self._timers[a.node] = self._loop.call_later(a.delay, self._retry_due, a.node)
                if self.listeners:
                    self._emit_node(
                        ev.NodeRetried, a.node, a.attempt, a.delay, ev.describe(a.error)
                    )
            elif kind is Failed:
                self.errors[a.node] = a.error
                if self.listeners:
                    self._emit_node(ev.NodeFailed, a.node, ev.describe(a.error))
                self._wake(a.node)
            elif kind is Skip:
                if self.listeners:
                    self._emit_node(ev.NodeSkipped, a.node, a.cause)
                self._wake(a.node)
            elif kind is Cancel:
                task = self._tasks.get(a.node)
                if task is not None:
                    self._cancelling[a.node] = None
                    task.cancel()
                    # A task cancelled before its first step ends without running a
                    # line of `_execute`, which would settle the node: settle it then.
                    task.add_done_callback(functools.partial(self._cancelled_unstarted, a.node))
            elif kind is Preempt:
                spec = self._speculative.get(a.call)
                if spec is not None:
                    self.cancel_speculative(spec)
            elif kind is RunDone:
                if self._done is not None and not self._done.done():
                    self._done.set_result(None)

    def _cancelled_unstarted(self, i: int, task: asyncio.Task[None]) -> None:
        if i in self._cancelling and self._tasks.get(i) is task:
            self._cancelling.pop(i, None)
            self._settle(i, None, None, cancelled=True)

    def _wake(self, node: int) -> None:
        fut = self._waiters.pop(node, None)
        if fut is not None and not fut.done():
            fut.set_exception(self._node_error(node))

    def _retry_due(self, node: int) -> None:
        del self._timers[node]
        self._act(self.sched.retry_due(node))

    def _launch(self, i: int, attempt: int) -> None:
        assert self._loop is not None, "nodes start only inside a running run"
        if self._observed:
            self._started(i, attempt)
        task = self._taker
        if task is not None:  # the task of the node settling now runs this one next
            self._taker = None
            self._tasks[i] = task
            self._next = i
            return
        self._tasks[i] = self._loop.create_task(self._execute(i))

    async def _execute(self, i: int, first: bool = True) -> int | None:
        """Run node `i` and settle it: the body of a node task.

        A node started by its parent's finish runs in the parent's task instead of a
        new one (in the same context: a new task would copy the parent's), which
        saves a task and a loop turn per link of a chain: the task's first node runs
        the nodes handed over to it (`_chain`); those return theirs (`first=False`).
        """
        tool = self.node_tools[i]
        self.started_at[i] = time.perf_counter()
        begun = self.durable is None  # a failure is journaled only after its intent
        try:
            if self.node_parents[i]:
                arguments = tool._checked(resolve(self.node_arguments[i], self.values))
            else:
                arguments = self.node_arguments[i]
            if self.durable is not None:
                try:
                    done = await self.durable.begin(i, tool, self.sched.attempts[i])
                except JournalError as exc:
                    if isinstance(exc, JournalValueError):
                        raise
                    self._tasks.pop(i, None)
                    self._journal_failed(i, exc)
                    return
                if done is not MISS:
                    if self._adopted:  # the journal has its result: the guess is moot
                        spec = self._adopted.pop(i, None)
                        if spec is not None and spec.task is not None:
                            spec.task.cancel()
                    self._replay(i, tool, done)
                    return
                begun = True
            _current_node.set((self, i))
            value = _UNSET
            if self._adopted:
                spec = self._adopted.pop(i, None)
                if spec is not None:
                    self.started_at[i] = spec.started_at  # the call began then
                    value = await self._adopted_value(i, spec)
            if value is _UNSET:
                value = await self._call(tool, arguments)
        except asyncio.CancelledError:
            if i not in self._cancelling:
                raise  # the whole run is being cancelled; `execute` awaits this task
            self._cancelling.pop(i, None)
            self._settle(i, None, None, cancelled=True)
        except Exception as exc:
            # Arguments refused before the intent: nothing ran, nothing to journal.
            self._settle(i, None, exc, replayed=not begun)
        else:
            self._settle(i, value, None, hand_over=True)
            handed, self._next = self._next, None
            if not first:
                return handed
            if handed is not None:
                await self._chain(handed)
        return None

    async def _chain(self, i: int | None) -> None:
        """Run node `i`, then each node handed over after it, in this task. After
        `_TURN` seconds of nodes back to back, the loop gets a turn first."""
        turn = time.perf_counter()
        while i is not None:
            if time.perf_counter() - turn > _TURN:
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    if i not in self._cancelling:
                        raise
                    self._cancelling.pop(i, None)
                    self._settle(i, None, None, cancelled=True)
                    return
                turn = time.perf_counter()
            i = await self._execute(i, first=False)

    def _replay(self, i: int, tool: Tool, done: Any) -> None:
        """Settle node `i` from its journaled result: its value (revived by its tool,
        if the tool says how), its tokens and its record fields."""
        if done.tokens:
            self.tokens[i] = done.tokens
        if done.extra:
            fields = {k: v for k, v in done.extra.items() if k != "session"}
            if fields:
                self.extra[i] = fields
        value = done.value
        if tool.revive is not None:
            _current_node.set((self, i))  # the revive may read its node's context
            try:
                value = tool.revive(value)
            except Exception as exc:  # the journaled value no longer fits: the node's error
                self._settle(i, None, exc, replayed=True)
                return
        self._settle(i, value, None, replayed=True)

    def _settle(
        self,
        i: int,
        value: Any,
        error: BaseException | None,
        cancelled: bool = False,
        replayed: bool = False,
        hand_over: bool = False,
    ) -> None:
        """Record how node `i` ended and carry out what follows.

        `hand_over`: the node's task may run the first node this starts (`_execute`).
        """
        try:
            t = self.finished_at[i] = time.perf_counter()
            task = self._tasks.pop(i)
            if cancelled:
                if self.listeners:
                    self._emit_node(ev.NodeCancelled, i)
                self._act(self.sched.cancelled(i))
                self._wake(i)
                return
            durable = self.durable if not replayed else None
            if durable is not None and error is None:
                try:
                    durable.end(i, self.nodes[i].tool, self._journal_form(i, value), None,
                                self.started_at[i], t, self.tokens.get(i, 0),
                                self.extra.get(i))
                except JournalValueError as exc:
                    error = exc
            if error is not None:
                actions = self.sched.fail(i, error)
                if (
                    durable is not None
                    and self.sched.state[i] == FAILED
                    and not isinstance(error, InDoubtError)
                ):
                    # Only the last attempt's failure is journaled; a retry writes a new
                    # intent. A call refused as in doubt keeps its old intent and no
                    # result, so it stays in doubt for the next resume too.
                    durable.end(i, self.nodes[i].tool, None, error, self.started_at[i], t,
                                self.tokens.get(i, 0), self.extra.get(i))
                self._act(actions)
                return
            self.values[i] = value
            if self._observed:
                self._finished(i, t, value, replayed)
            actions = self.sched.finish(i)
            if actions:
                if hand_over:
                    self._taker = task
                    try:
                        self._act(actions)
                    finally:
                        self._taker = None
                else:
                    self._act(actions)
            if self._waiters:
                fut = self._waiters.pop(i, None)
                if fut is not None and not fut.done():
                    fut.set_result(value)
        except JournalError as exc:  # the writer failed: a result cannot be stored
            self._journal_failed(i, exc)
        except Exception as exc:  # a bug in plait, not in the tool: fail the run loudly
            self._stop_run(exc)

    def _journal_form(self, i: int, value: Any) -> Any:
        """What node `i`'s result is journaled as: its value, unless its tool said
        otherwise (journal_as)."""
        if self.journal_forms:
            return self.journal_forms.pop(i, value)
        return value

    def _journal_failed(self, i: int | None, exc: BaseException) -> None:
        """The journal cannot be written: stop the run, saying where and what to do."""
        if self._fault is not None:
            return
        call = f" at node ${i} (tool {self.nodes[i].tool!r})" if i is not None else ""
        self._stop_run(journal_failure(self.run_id, exc, f"stopped{call}"))

    def _writer_failed(self, exc: BaseException) -> None:
        """From the journal writer's thread: it gave up, or lost a queued result."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._journal_failed, None, exc)
        except RuntimeError:  # the loop is closed: the run is over
            pass

    def _stop_run(self, error: BaseException) -> None:
        """End the run with `error`: wake `execute` wherever it waits (see module doc)."""
        if self._fault is not None:
            return
        self._fault = error
        if self._host is not None and self._loop is not None:
            # From a callback, so the body's task is waiting, never mid-step, when cancelled.
            self._loop.call_soon(self._cancel_body)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _cancel_body(self) -> None:
        """Wake the workflow body with CancelledError wherever it waits (a run fault).

        The body runs in the task of `execute` (a task of its own would cost one more
        task and wake-up per run), so this is that task's cancel, taken back when the
        body ends (as `asyncio.timeout` does), and a cancel from outside stays one.
        """
        host = self._host
        if host is not None and not host.done():
            self._host_cancelled = True
            host.cancel()

    def _end_body(self) -> bool:
        """The body ended: take back `_cancel_body`'s cancel; True if one from outside
        is still pending (the run itself is being cancelled)."""
        host, self._host = self._host, None
        if host is None:
            return False
        if self._host_cancelled:
            self._host_cancelled = False
            return host.uncancel() > 0
        return host.cancelling() > 0

    async def _call(self, tool: Tool, arguments: dict[str, Any]) -> Any:
        """Call `tool` where it runs (a node's call, or a speculative one), bounded by
        its timeout."""
        local = self._local
        executor = (local if local is not None and tool.policy.resources is None
                    else self._place(tool))
        timeout = tool.policy.timeout
        if timeout is None:
            return await executor.submit(tool, arguments)
        # A local thread cannot be stopped: on timeout its call is abandoned.
        async with asyncio.timeout(timeout):
            return await executor.submit(tool, arguments)

    def _place(self, tool: Tool) -> Executor:
        """Where a call runs when it is not simply the run's local executor: a tool
        asking for resources on Ray (the run's Ray executor, else the default one); a
        tool that needs the run (an LLM call) here; any other where the run says."""
        if tool.policy.resources is not None:
            return self.executor if isinstance(self.executor, RayExecutor) else remote_executor()
        if tool.fn in IN_CONTROLLER:
            if self._local is not None:
                return self._local
            if self._here is None:  # closed when the run ends, as the default one is
                self._here = LocalExecutor(self._max_threads)
            return self._here
        return self.executor

    # ------------------------------------------------------------ events

    def _emit(self, event: ev.Event) -> None:
        for listener in self.listeners:
            listener(event)

    def _started(self, i: int, attempt: int) -> None:
        t = time.perf_counter()
        if self._watched:
            if i in self._queued:
                self._queued.pop(i, None)  # NodeReady went out when it was queued
            else:
                self._emit(ev.NodeReady(self.run_id, t, i, self.node_tools[i].name))
            self._emit(ev.NodeStarted(self.run_id, t, i, self.node_tools[i].name, attempt))
        if self.tracer is not None:
            self.tracer.started(i, t, attempt)

    def _finished(self, i: int, t: float, value: Any, replayed: bool) -> None:
        tokens = self.tokens.get(i, 0) if self.tokens else 0
        record = self.extra.get(i) if self.extra else None
        if self._watched:
            self._emit(ev.NodeFinished(self.run_id, t, i, self.node_tools[i].name,
                                       t - self.started_at[i], value, replayed, tokens, record))
        if self.tracer is not None:
            self.tracer.finished(i, t, value, replayed, tokens, record)

    def _emit_node(self, kind: Callable[..., ev.Event], node: int, *rest: Any) -> None:
        self._emit(kind(self.run_id, time.perf_counter(), node, self.node_tools[node].name,
                        *rest))

    # ------------------------------------------------------------ running

    async def execute(
        self, body: Callable[[], Coroutine[Any, Any, Any]] | None = None
    ) -> RunResult:
        """Run `body` (a workflow) or the graph added before; return when all is done."""
        self._loop = asyncio.get_running_loop()
        started = time.perf_counter()
        if self.listeners:
            self._emit(ev.RunStarted(self.run_id, started, self.entry))
        value: Any = None
        error: BaseException | None = None
        if self.durable is not None:
            self.durable.watch(self._writer_failed)
        token = _current.set(self)
        try:
            if body is not None:
                self._host = asyncio.current_task()
                try:
                    value = await body()
                except asyncio.CancelledError:
                    if self._end_body() or self._fault is None:
                        raise
                except Exception as exc:  # the body failed: stop, keep what finished
                    self._end_body()
                    error = exc
                    self._act(self.sched.stop(self.sched.on_error == "cancel"))
                else:
                    self._end_body()
            if self._fault is None:
                self._act(self.sched.close())
                if not self.sched.finished:  # nodes still run: wait for RunDone (or a fault)
                    self._done = self._loop.create_future()
                    await self._done
            if self._speculative:  # unadopted guesses outlive no run
                await self._end_speculation()
            if self._fault is not None:
                raise self._fault
        except BaseException as exc:  # cancelled from outside, the journal, a driver fault
            for timer in self._timers.values():
                timer.cancel()
            tasks = list(self._tasks.values())
            tasks += [s.task for s in self._speculative.values() if s.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.listeners:
                status = "failed" if exc is self._fault else "cancelled"
                self._emit(ev.RunFinished(self.run_id, time.perf_counter(), status))
            raise
        finally:
            _current.reset(token)
            if self._local is not None:
                self._local.close()
            if self._here is not None:
                self._here.close()
        if error is None:
            try:
                value = _resolve_refs(value, self)
            except NodeError as exc:
                error = exc
        if self.errors:
            # A node's own failure explains the run better than its echo in the body
            # (a NodeError for a skipped input, say).
            error = self._node_error(min(self.errors))
        status = "done" if error is None else "failed"
        finished = time.perf_counter()
        if self.listeners:
            self._emit(ev.RunFinished(self.run_id, finished, status))
        return RunResult(
            run_id=self.run_id,
            status=status,
            value=value if error is None else None,
            error=error,
            started_at=started,
            finished_at=finished,
            _nodes=self.nodes,
            _columns=self,
            replayed=self.durable.replayed if self.durable is not None else 0,
        )

    async def _end_speculation(self) -> None:
        tasks = [s.task for s in self._speculative.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


_UNSET: Any = object()  # no value yet (None is a value)


class _Nodes(Sequence[Node]):
    """A run's nodes as `Node` records, each made the first time it is asked for.

    The run keeps a node's parts in columns; a Node (a frozen dataclass, costly to
    make on the path of every call) is made only for what reads whole records:
    results, errors, the journal. Made once, so a node is always the same object.
    It holds the columns, not the run: a run in no reference cycle is freed at once.
    """

    __slots__ = ("tools", "arguments", "parents", "_made")

    def __init__(self, tools: list[Tool], arguments: list[Mapping[str, Any]],
                 parents: list[tuple[int, ...]]) -> None:
        # The run's columns, read as they grow (the tracer reads a call's parts here).
        self.tools = tools
        self.arguments = arguments
        self.parents = parents
        self._made: list[Node | None] | None = None  # made when a record is first asked

    def __len__(self) -> int:
        return len(self.tools)

    @overload
    def __getitem__(self, i: int) -> Node: ...

    @overload
    def __getitem__(self, i: slice) -> list[Node]: ...

    def __getitem__(self, i: int | slice) -> Node | list[Node]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"node {i} is not in the run ({n} nodes)")
        made = self._made
        if made is None:
            made = self._made = []
        if len(made) < n:
            made.extend([None] * (n - len(made)))
        node = made[i]
        if node is None:
            node = made[i] = Node(i, self.tools[i].name, self.arguments[i], self.parents[i])
        return node


def _at_once(value: Any) -> Generator[Any, None, Any]:
    """An await that returns `value` without suspending."""
    return value
    yield  # a generator: `await` takes it as an iterator


def journal_failure(run_id: str, exc: BaseException, what: str = "stopped") -> JournalError:
    """The error a run raises when its journal fails: `exc` names the journal and the
    cause; this says what became of the run and what to do, on one line."""
    text = " ".join(str(exc).split())
    error = JournalError(
        f"run {run_id} {what}: {text}. Calls whose results were not written are in "
        f"doubt. Fix the cause, then resume the run: plait resume {run_id} --journal JOURNAL"
    )
    error.__cause__ = exc
    return error


def new_run_id() -> str:
    return os.urandom(6).hex()  # 12 random hex digits, as uuid4().hex[:12] but cheaper


def _resolve_refs(value: Any, run: Run) -> Any:
    """Replace refs in a workflow's return value by their nodes' values."""
    kind = type(value)
    if kind in ATOMS or (kind is dict and all(type(v) in ATOMS for v in value.values())):
        return value  # nothing to replace (the common row value): no copy

    def value_of(ref: Ref) -> Any:
        if run.sched.state[ref.node] != DONE:
            raise run._node_error(ref.node)
        return run.values[ref.node]

    return map_refs(value, value_of)


def raise_for_status(result: RunResult) -> RunResult:
    if not result.ok:
        raise RunError(f"run {result.run_id} failed: {result.error}", result) from result.error
    return result


def tools_by_name(tools: Iterable[Tool]) -> dict[str, Tool]:
    table: dict[str, Tool] = {}
    for t in tools:
        if not isinstance(t, Tool):
            raise TypeError(f"{t!r} is not a plait tool (decorate it with @plait.tool)")
        if t.name in table and table[t.name] is not t:
            raise GraphError(f"two different tools are named {t.name!r}")
        table[t.name] = t
    return table
