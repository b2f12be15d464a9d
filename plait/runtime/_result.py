"""What a run returns: the value, every node's record and the critical path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from plait.runtime._graph import Node
from plait.runtime._scheduler import DONE, STATE_NAMES


_NONE: Mapping[str, Any] = MappingProxyType({})  # a node whose tool added no fields


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node of a finished run: its state, attempts, timings, value or error."""

    id: int
    tool: str
    parents: tuple[int, ...]
    state: str  # done | failed | skipped | cancelled | pending
    attempts: int
    added_at: float  # perf_counter seconds
    started_at: float | None  # start of the last attempt
    finished_at: float | None
    value: Any = None
    error: BaseException | None = None
    tokens: int = 0  # LLM tokens its call used (a replayed call: what it used then)
    # Fields its tool added (an LLM call: prompt_tokens, completion_tokens, ttft, elapsed,
    # finish_reason, estimated); journaled with its result, so a replayed call has them.
    extra: Mapping[str, Any] = field(default_factory=lambda: _NONE)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class RunResult:
    """A finished run. Node records are built on first access (runs can be large)."""

    run_id: str
    status: str  # done | failed | cancelled
    value: Any
    error: BaseException | None
    started_at: float
    finished_at: float
    _nodes: Sequence[Node] = field(repr=False)
    _columns: Any = field(repr=False)  # the engine's per-node arrays
    replayed: int = 0  # nodes whose value came from the journal, not from a call

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @property
    def elapsed(self) -> float:
        return self.finished_at - self.started_at

    @cached_property
    def nodes(self) -> tuple[NodeRecord, ...]:
        c = self._columns
        return tuple(
            NodeRecord(
                id=n.id,
                tool=n.tool,
                parents=n.parents,
                state=STATE_NAMES[c.state[n.id]],
                attempts=c.attempts[n.id],
                added_at=c.added_at[n.id],
                started_at=c.started_at[n.id],
                finished_at=c.finished_at[n.id],
                value=c.values[n.id] if c.state[n.id] == DONE else None,
                error=c.errors.get(n.id),
                tokens=c.tokens.get(n.id, 0),
                extra=MappingProxyType(c.extra[n.id]) if n.id in c.extra else _NONE,
            )
            for n in self._nodes
        )

    @property
    def tokens(self) -> int:
        """LLM tokens over every node (replayed ones count what they used then)."""
        return sum(self._columns.tokens.values())

    @property
    def errors(self) -> dict[int, BaseException]:
        """Every node's final error, by node id."""
        return dict(self._columns.errors)

    @cached_property
    def critical_path(self) -> list[int]:
        """The chain of nodes that set the run's length, first to last.

        It ends at the node that finished last; each step goes back to the input
        that finished last, the one the node was waiting for.
        """
        c = self._columns
        finished = c.finished_at
        done = [n for n in self._nodes if finished[n.id] is not None]
        if not done:
            return []
        node = max(done, key=lambda n: finished[n.id])
        path = [node.id]
        while node.parents:
            last = max(node.parents, key=lambda p: finished[p] or 0.0)
            path.append(last)
            node = self._nodes[last]
        path.reverse()
        return path

    def critical_path_time(self) -> float:
        """Sum of the critical path's node durations: the run's length with zero overhead."""
        c = self._columns
        total = 0.0
        for i in self.critical_path:
            if c.started_at[i] is not None and c.finished_at[i] is not None:
                total += c.finished_at[i] - c.started_at[i]
        return total
