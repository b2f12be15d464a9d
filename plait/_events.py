"""Typed events of a run, for progress displays, journals and tracing.

Timestamps `t` are `time.perf_counter()` seconds: monotonic, comparable within one
process. Events are built only when a run has at least one listener.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in run `run_id` at `t` (perf_counter seconds)."""

    run_id: str
    t: float


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """The run began; `entry` names the workflow."""

    entry: str


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    """The run ended with `status`."""

    status: str  # "done" | "failed" | "cancelled"


@dataclass(frozen=True, slots=True)
class NodeEvent(Event):
    node: int
    tool: str


@dataclass(frozen=True, slots=True)
class NodeAdded(NodeEvent):
    """A node joined the graph; `parents` are the nodes it waits for."""

    parents: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NodeReady(NodeEvent):
    """Every input is done; the node starts now or when a slot frees up."""


@dataclass(frozen=True, slots=True)
class NodeStarted(NodeEvent):
    """An attempt of the node began (`attempt` counts from 1)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class NodeFinished(NodeEvent):
    """The node returned `value` after `duration` seconds; `replayed`: the value came
    from the journal (a resumed run), the call did not run again."""

    duration: float
    value: Any = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class NodeRetried(NodeEvent):
    """An attempt failed with `error`; attempt `attempt` follows after `delay` s."""

    attempt: int  # the attempt that will run next
    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class NodeFailed(NodeEvent):
    """The node failed for good with `error` ("Type: message")."""

    error: str


@dataclass(frozen=True, slots=True)
class NodeSkipped(NodeEvent):
    """The node will not run: an input failed, or the run stopped."""

    cause: int  # the failed node it depended on, or -1 when the run stopped


@dataclass(frozen=True, slots=True)
class NodeCancelled(NodeEvent):
    """The node was cancelled while it ran."""


Listener = Callable[[Event], None]


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
