"""Typed events of a run, for progress displays, journals and tracing.

Timestamps `t` are `time.perf_counter()` seconds: monotonic, comparable within one
process. Events are built only when a run has at least one listener; a call's own
four (added, ready, started, finished) only for a listener of the caller's: the
tracer learns of a call's start and end without them (`CallTracer`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol


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
    """A node joined the graph; `parents` are the nodes it waits for; `arguments` are
    its call's arguments as given (an upstream value is its `Ref`)."""

    parents: tuple[int, ...]
    arguments: Mapping[str, Any] | None = None


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
    from the journal (a resumed run), the call did not run again. `tokens` and
    `record` are its record's (`NodeRecord.tokens`, `.extra`): an LLM call's token
    split, time to first token and finish reason."""

    duration: float
    value: Any = None
    replayed: bool = False
    tokens: int = 0
    record: Mapping[str, Any] | None = None


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

# The dataset row whose run starts in this context: (ordinal, key). Set by the row
# runner around a row's run, so an observer (tracing) can tell the row's run apart.
current_row: ContextVar[tuple[int, str] | None] = ContextVar("plait_row", default=None)


class CallTracer(Protocol):
    """What traces a run (OpenTelemetry): a listener of its events, but told of a
    call's start and end by plain calls, without the four events a call would
    otherwise build (they were most of tracing's cost per call). It reads the rest
    of a call (tool, arguments, parents) from the run's node columns. It gets the
    per-call events too when a listener of the caller's has them built: it ignores
    them."""

    def on_event(self, event: Event) -> None: ...

    def started(self, node: int, t: float, attempt: int) -> None:
        """An attempt of `node` began at `t` (NodeStarted)."""

    def finished(self, node: int, t: float, value: Any, replayed: bool, tokens: int,
                 record: Mapping[str, Any] | None) -> None:
        """`node` returned `value` at `t` (NodeFinished)."""


def observers_of(run_id: str, entry: str, listeners: Sequence[Listener],
                 nodes: Any) -> tuple[tuple[Listener, ...], CallTracer | None]:
    """A run's listeners (its own, and the tracer's when OpenTelemetry is
    configured) and its tracer. `nodes`: the run's node columns (`tools`,
    `arguments`, `parents`: lists by node id), which the tracer reads.

    Asked once per run; tracing off, it adds none, so the run builds no event.
    """
    tracing = tracing_now()
    if tracing is None:
        return tuple(listeners), None
    tracer = tracing.run_tracer(run_id, entry, nodes)
    return (*listeners, tracer.on_event), tracer


def listeners_of(run_id: str, entry: str, listeners: Sequence[Listener]) -> tuple[Listener, ...]:
    """The listeners of what is not a run of nodes (a dataset job): its own, and
    the tracer's when OpenTelemetry is configured."""
    tracing = tracing_now()
    return tuple(listeners) if tracing is None else (*listeners,
                                                     tracing.listener(run_id, entry))


def describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


from plait.otel._hook import tracing_now  # noqa: E402  (imports no OpenTelemetry until it is on)
