"""The scheduler core: a state machine over plain data, with no I/O, clock or loop.

Each public method is one event (a node was added, finished, failed, ...) and
returns the actions the driver must carry out (start a node, cancel one, retry one
later, tell waiters a node will not run, the run is over). Because the state is
plain data and the transitions are plain functions, the tests drive it directly,
without an event loop; the asyncio driver (`_engine.py`) and any other driver only
carry the actions out. State is mutated in place for speed: the driver owns the
only reference.

Invariants kept here, relied on by drivers:
- a node is started only when every parent is DONE (`waiting[i] == 0`);
- a node becomes startable in the same transition that finishes its last parent,
  so it starts no later than the scheduler's next step;
- no more than `max_concurrency` nodes, and no more than a tool's `concurrency`
  nodes of that tool, are RUNNING at once;
- when slots are scarce, the ready node with the longest known remaining path
  (in nodes) starts first; ties go to the older node;
- a speculative call (a read-only call started before anyone asked for it) takes
  only a free slot, and only while no node waits for one; a node that finds the
  slots full takes the youngest speculative call's slot (`Preempt`). So
  speculation never delays a node. Adopted, a call's slot becomes its node's.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Literal

from plait._errors import NotRetryable, OptionError
from plait.runtime._tools import ToolPolicy

# Node states. Terminal: DONE, FAILED, SKIPPED, CANCELLED.
PENDING, READY, RUNNING, RETRY_WAIT, DONE, FAILED, SKIPPED, CANCELLED = range(8)
STATE_NAMES = ("pending", "ready", "running", "retry_wait", "done", "failed", "skipped", "cancelled")
_TERMINAL = (DONE, FAILED, SKIPPED, CANCELLED)

OnError = Literal["stop", "cancel", "continue"]

# Actions are messages: made by a transition, read once by the driver, never kept.
# They are not frozen because a frozen dataclass costs three times as much to make,
# and a Start is made for every node, on the path that sets plait's overhead.


@dataclass(slots=True)
class Start:
    node: int
    attempt: int  # 1 for the first try


@dataclass(slots=True)
class Queued:
    """The node's inputs are done but it waits for a free slot."""

    node: int


@dataclass(slots=True)
class Cancel:
    node: int


@dataclass(slots=True)
class Preempt:
    """A ready node takes speculative call `call`'s slot: the driver cancels the call."""

    call: int


@dataclass(slots=True)
class RetryLater:
    node: int
    attempt: int  # the attempt that will run after `delay`
    delay: float
    error: BaseException


@dataclass(slots=True)
class Failed:
    """The node failed for good (retries exhausted or not retryable)."""

    node: int
    error: BaseException


@dataclass(slots=True)
class Skip:
    """The node will not run: an input failed (`cause` >= 0) or the run is stopping (-1)."""

    node: int
    cause: int


@dataclass(slots=True)
class RunDone:
    pass


Action = Start | Queued | Cancel | Preempt | RetryLater | Failed | Skip | RunDone

_DEFAULT_POLICY = ToolPolicy()


class Scheduler:
    """Dependency counters, a ready queue and limits for one run."""

    __slots__ = (
        "max_concurrency", "on_error", "seed", "_rng", "tool", "waiting", "children", "state",
        "attempts", "prio", "cause", "policies", "limits", "running", "running_by_tool", "open",
        "heap", "blocked", "closed", "stopping", "finished", "_prio_n", "speculative",
    )

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        on_error: OnError = "stop",
        seed: int | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise OptionError(f"max_concurrency must be >= 1 or None, got {max_concurrency}")
        if on_error not in ("stop", "cancel", "continue"):
            raise OptionError(f"on_error must be 'stop', 'cancel' or 'continue', not {on_error!r}")
        self.max_concurrency = max_concurrency
        self.on_error: OnError = on_error
        self.seed = seed
        self._rng: random.Random | None = None  # made on the first retry (seeding costs)
        # Per node, indexed by id (ids are dense and parents always have smaller ids).
        self.tool: list[str] = []
        self.waiting: list[int] = []  # parents not yet DONE
        # A node's children; most nodes have none, and share one empty tuple until
        # their first child (a list per node is the largest object of a fan-out).
        self.children: list[list[int] | tuple[()]] = []
        self.state = bytearray()
        self.attempts: list[int] = []
        self.prio: list[int] = []  # longest known path to a sink, in nodes
        self.cause: dict[int, int] = {}  # skipped node -> the failed node behind it, or -1
        self.policies: dict[str, ToolPolicy] = {}
        self.limits: dict[str, int] = {}
        # Counters.
        self.running = 0
        self.running_by_tool: dict[str, int] = {}
        self.open = 0  # nodes not yet terminal
        self.heap: list[tuple[int, int]] = []  # (-prio, id) of READY nodes waiting for a slot
        self.blocked: dict[str, list[tuple[int, int]]] = {}  # READY, waiting for a tool slot
        self.closed = False  # no more nodes will be added
        self.stopping = False
        self.finished = False
        self._prio_n = 0  # node count when priorities were last computed
        # Speculative calls holding a slot: call id -> tool, oldest first (dict order).
        self.speculative: dict[int, str] = {}

    # ----------------------------------------------------------------- events

    def add(
        self, node: int, tool: str, parents: Sequence[int], policy: ToolPolicy | None = None,
        adopt: int | None = None,
    ) -> list[Action]:
        """A node joined the graph; it starts at once if its inputs are done.

        `adopt`: the speculative call (of the same tool) this node becomes: if it
        still holds a slot, the node starts at once in that slot."""
        actions: list[Action] = []
        if adopt is not None and not parents and not self.stopping:
            held = self.speculative.get(adopt)
            if held is not None:
                if held != tool:
                    raise ValueError(f"node {node} ({tool}) cannot adopt a call of {held}")
                self._add(node, tool, parents, policy, actions, adopt)
                return actions
        self._add(node, tool, parents, policy, actions)
        if self.heap:
            self._fill(actions)
        return actions

    def add_many(
        self, nodes: Iterable[tuple[int, str, Sequence[int], ToolPolicy | None]]
    ) -> list[Action]:
        """Several nodes at once: priorities see the whole batch before anything starts."""
        actions: list[Action] = []
        for node, tool, parents, policy in nodes:
            self._add(node, tool, parents, policy, actions)
        if self.heap:
            self._reprioritize()
            self._fill(actions)
        return actions

    def finish(self, node: int) -> list[Action]:
        """A running node returned a value."""
        actions: list[Action] = []
        state = self.state
        if state[node] != RUNNING or self.limits:
            self._release(node)
        else:
            self.running -= 1
        state[node] = DONE
        self.open -= 1
        children = self.children[node]
        if children and not self.stopping:
            waiting = self.waiting
            for c in children:
                waiting[c] -= 1
                if waiting[c] == 0 and state[c] == PENDING:
                    self._ready(c, actions)
        if self.heap:
            self._fill(actions)
        if self.closed and self.open == 0:
            self._check_done(actions)
        return actions

    def fail(self, node: int, error: BaseException) -> list[Action]:
        """A running node raised. Retried if its policy says so, else failed for good."""
        actions: list[Action] = []
        self._release(node)
        policy = self.policies.get(self.tool[node], _DEFAULT_POLICY)
        attempt = self.attempts[node]
        if (
            not self.stopping
            and attempt <= policy.retries
            and isinstance(error, policy.retry_on)
            and not isinstance(error, NotRetryable)  # e.g. bad arguments stay bad
        ):
            self.state[node] = RETRY_WAIT
            delay = policy.delay(attempt, self.rng.random())
            actions.append(RetryLater(node, attempt + 1, delay, error))
            self._fill(actions)
            return actions
        self.state[node] = FAILED
        self.open -= 1
        actions.append(Failed(node, error))
        if self.on_error == "continue":
            self._skip_descendants(node, actions)
        else:
            self._stop(actions, cancel_running=self.on_error == "cancel")
        self._fill(actions)
        self._check_done(actions)
        return actions

    def retry_due(self, node: int) -> list[Action]:
        """The backoff of a node in RETRY_WAIT has elapsed."""
        actions: list[Action] = []
        if self.state[node] == RETRY_WAIT:
            self._ready(node, actions)
            self._fill(actions)
        return actions

    def speculate(self, call: int, tool: str, policy: ToolPolicy | None = None) -> bool:
        """May speculative call `call` of `tool` start now? Only into a free slot, and
        only while no node waits for one (speculation comes last). True: the call
        holds a slot until `speculation_ended`, a `Preempt`, or a node adopts it."""
        if self.stopping or self.closed or self.heap or call in self.speculative:
            return False  # (closed: no node will come to adopt it)
        if policy is not None and tool not in self.policies:
            self.policies[tool] = policy
            if policy.concurrency is not None:
                self.limits[tool] = policy.concurrency
        cap = self.max_concurrency
        if cap is not None and self.running >= cap:
            return False
        limit = self.limits.get(tool)
        if limit is not None:
            if self.running_by_tool.get(tool, 0) >= limit or self.blocked.get(tool):
                return False
            self.running_by_tool[tool] = self.running_by_tool.get(tool, 0) + 1
        self.running += 1
        self.speculative[call] = tool
        return True

    def speculation_ended(self, call: int) -> list[Action]:
        """Speculative call `call` ended, unadopted: its slot is free again (a no-op
        for a call preempted or adopted, whose slot is gone already)."""
        actions: list[Action] = []
        tool = self.speculative.pop(call, None)
        if tool is not None:
            self._free(tool)
            if self.heap:
                self._fill(actions)
        return actions

    def cancelled(self, node: int) -> list[Action]:
        """A running node stopped because the driver cancelled it."""
        actions: list[Action] = []
        self._release(node)
        self.state[node] = CANCELLED
        self.open -= 1
        if not self.stopping:
            self._skip_descendants(node, actions)
        self._fill(actions)
        self._check_done(actions)
        return actions

    def close(self) -> list[Action]:
        """No more nodes will be added (the workflow body returned)."""
        actions: list[Action] = []
        self.closed = True
        self._check_done(actions)
        return actions

    def stop(self, cancel_running: bool) -> list[Action]:
        """End the run early: add and start nothing more; cancel what runs if asked."""
        actions: list[Action] = []
        self.closed = True
        self._stop(actions, cancel_running)
        self._check_done(actions)
        return actions

    # ---------------------------------------------------------------- queries

    @property
    def rng(self) -> random.Random:
        """The source of retry jitter: `seed` makes a run's delays repeatable."""
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng

    def state_name(self, node: int) -> str:
        return STATE_NAMES[self.state[node]]

    def __len__(self) -> int:
        return len(self.state)

    # -------------------------------------------------------------- internals

    def _add(
        self,
        node: int,
        tool: str,
        parents: Sequence[int],
        policy: ToolPolicy | None,
        actions: list[Action],
        adopt: int | None = None,
    ) -> None:
        state = self.state
        if node != len(state):
            raise ValueError(f"node ids must be added in order: expected {len(state)}")
        if self.closed:
            raise RuntimeError("the run is closed; no node can be added")
        if policy is not None and tool not in self.policies:
            self.policies[tool] = policy
            if policy.concurrency is not None:
                self.limits[tool] = policy.concurrency
        self.tool.append(tool)
        children = self.children
        children.append(())
        self.attempts.append(0)
        self.prio.append(1)
        self.open += 1
        waiting = 0
        dead: int | None = None  # the failed node behind a dead input, or -1
        for p in parents:
            if p >= node:
                raise ValueError(f"node {node}: parent {p} is not an earlier node")
            ps = state[p]
            if ps != DONE:
                if ps >= FAILED:
                    dead = self.cause.get(p, -1) if ps == SKIPPED else p
                waiting += 1
            siblings = children[p]
            if siblings:
                siblings.append(node)
            else:
                children[p] = [node]
        self.waiting.append(waiting)
        state.append(PENDING)
        if self.stopping:
            self._skip(node, -1, actions)
        elif dead is not None:
            self._skip(node, dead, actions)
        elif adopt is not None:  # the call's slot (counted in `running`) is the node's now
            del self.speculative[adopt]
            state[node] = RUNNING
            self.attempts[node] = 1
            actions.append(Start(node, 1))
        elif waiting == 0:
            self._ready(node, actions)

    def _ready(self, node: int, actions: list[Action]) -> None:
        if self.max_concurrency is None and (not self.limits or self.tool[node] not in self.limits):
            # Unlimited: no queue, no slot to count; `_start` without its limit checks,
            # as this is every node's path in most runs.
            self.state[node] = RUNNING
            self.running += 1
            attempt = self.attempts[node] = self.attempts[node] + 1
            actions.append(Start(node, attempt))
            return
        self.state[node] = READY
        heappush(self.heap, (-self.prio[node], node))
        actions.append(Queued(node))

    def _start(self, node: int, actions: list[Action]) -> None:
        self.state[node] = RUNNING
        self.running += 1
        if self.limits:
            tool = self.tool[node]
            if tool in self.limits:
                self.running_by_tool[tool] = self.running_by_tool.get(tool, 0) + 1
        attempt = self.attempts[node] = self.attempts[node] + 1
        actions.append(Start(node, attempt))

    def _release(self, node: int) -> None:
        if self.state[node] != RUNNING:
            raise ValueError(f"node {node} is {STATE_NAMES[self.state[node]]}, not running")
        self._free(self.tool[node])

    def _free(self, tool: str) -> None:
        """A slot of `tool` is free again."""
        self.running -= 1
        if not self.limits:
            return
        if tool in self.limits:
            self.running_by_tool[tool] -= 1
            blocked = self.blocked.get(tool)
            if blocked:
                heappush(self.heap, heappop(blocked))

    def _fill(self, actions: list[Action]) -> None:
        if self.stopping or not self.heap:
            return
        cap = self.max_concurrency
        if len(self.heap) > 1 and 2 * (len(self.state) - self._prio_n) > self._prio_n:
            # The graph grew by half since priorities were computed: recompute them.
            # Geometric growth keeps this O(1) amortized per node.
            self._reprioritize()
        heap, state, limits = self.heap, self.state, self.limits
        while heap and (cap is None or self.running < cap or self.speculative):
            item = heappop(heap)
            node = item[1]
            if state[node] != READY:
                continue  # skipped while queued
            tool = self.tool[node]
            limit = limits.get(tool)
            if (limit is not None and self.running_by_tool.get(tool, 0) >= limit
                    and not self._preempt(tool, actions)):
                heappush(self.blocked.setdefault(tool, []), item)
                continue
            if cap is not None and self.running >= cap:
                self._preempt(None, actions)  # the loop's test: there is one to take
            self._start(node, actions)

    def _preempt(self, tool: str | None, actions: list[Action]) -> bool:
        """Free the slot of the youngest speculative call (of `tool`, if given)."""
        for call in reversed(self.speculative):
            held = self.speculative[call]
            if tool is None or held == tool:
                del self.speculative[call]
                self._free(held)
                actions.append(Preempt(call))
                return True
        return False

    def _reprioritize(self) -> None:
        prio, children = self.prio, self.children
        for i in range(len(prio) - 1, -1, -1):
            cs = children[i]
            prio[i] = 1 + max(prio[c] for c in cs) if cs else 1
        self._prio_n = len(prio)
        self.heap = [(-prio[i], i) for _, i in self.heap]
        heapify(self.heap)
        for tool, items in self.blocked.items():
            self.blocked[tool] = [(-prio[i], i) for _, i in items]
            heapify(self.blocked[tool])

    def _skip(self, node: int, cause: int, actions: list[Action]) -> None:
        self.state[node] = SKIPPED
        self.open -= 1
        self.cause[node] = cause
        actions.append(Skip(node, cause))

    def _skip_descendants(self, root: int, actions: list[Action]) -> None:
        stack = [root]
        state = self.state
        while stack:
            for c in self.children[stack.pop()]:
                if state[c] in (PENDING, READY):
                    self._skip(c, root, actions)
                    stack.append(c)

    def _stop(self, actions: list[Action], cancel_running: bool) -> None:
        if not self.stopping:
            self.stopping = True
            state = self.state
            for i in range(len(state)):
                s = state[i]
                if s in (PENDING, READY, RETRY_WAIT):
                    self._skip(i, -1, actions)
            self.heap.clear()
            self.blocked.clear()
            for call, tool in list(self.speculative.items()):  # no node will want them
                del self.speculative[call]
                self._free(tool)
                actions.append(Preempt(call))
        if cancel_running:
            actions.extend(Cancel(i) for i in range(len(self.state)) if self.state[i] == RUNNING)

    def _check_done(self, actions: list[Action]) -> None:
        if self.closed and self.open == 0 and not self.finished:
            self.finished = True
            actions.append(RunDone())

