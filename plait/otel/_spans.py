"""Runs as OpenTelemetry traces: a tracer per run (`_RunTrace`, an ev.CallTracer)
turns its calls' starts and ends, and its events, into spans.

A run is a span (one per session: a resumed run's new session is a second run
span), each node a span under it: parallel calls are siblings whose times
overlap, a node's inputs are named in `plait.node.parents`. With no span of the
caller's current, the run's span starts a trace whose id is derived from the run
id, so every session of a run, before and after a crash, lands in one trace. A
dataset job is one trace: the job's span, a span per row under it, the row's
nodes under that.

A node's span is made when the node ends, with its start time: nothing is held
per running node but its start time (its tool, arguments and parents are the
run's own records, read then), and an ended span goes straight to the span
processor (batched), so a 100,000-row job holds only what its window of rows in
flight holds.
"""

from __future__ import annotations

import contextvars
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from plait.runtime import _events as ev
from plait.otel._attrs import content, input_messages, is_llm_request, llm_attributes
from plait.otel._attrs import output_messages, scrub
from plait.otel._hook import trace_id_of

# Event times are perf_counter seconds; spans want epoch nanoseconds.
_BASE_NS = time.time_ns() - time.perf_counter_ns()
_NO_CONTEXT = Context()  # a root span's parent: none, whatever is current
_UNSET = Status(StatusCode.UNSET)
_CLIENT, _INTERNAL = SpanKind.CLIENT, SpanKind.INTERNAL


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=2)


def _ns(t: float) -> int:
    return _BASE_NS + int(t * 1e9)


class _RunIds:
    """The SDK tracer's id generator, but a run's root span gets the run's trace id."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.next: contextvars.ContextVar[int | None] = contextvars.ContextVar(
            "plait_trace_id", default=None)

    def generate_span_id(self) -> int:
        return self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        trace_id = self.next.get()
        return self.inner.generate_trace_id() if trace_id is None else trace_id

    def is_trace_id_random(self) -> bool:  # a derived id is not random (W3C trace flags)
        return False


class Tracing:
    """Tracing into one tracer provider."""

    def __init__(self, provider: Any, *, capture: bool = False) -> None:
        self.provider = provider
        self.capture = capture
        import plait  # loaded by now: a run is starting

        self.tracer = provider.get_tracer("plait", plait.__version__)
        inner = getattr(self.tracer, "id_generator", None)  # the SDK's Tracer has one
        self.ids = _RunIds(inner) if inner is not None else None
        if self.ids is not None:
            self.tracer.id_generator = self.ids
        self.jobs: dict[str, Any] = {}  # run id -> the span of a dataset job running now
        self.tool_spans: dict[str, tuple[str, dict[str, Any]]] = {}  # see `tool_span`
        # The SDK's tracer hands ended spans to its provider's processors: a node's
        # span, made when it has ended, goes there as a finished ReadableSpan (2.7 us,
        # not the 20 us of a span started and ended through the tracer; see
        # docs/otel.md). Another tracer gets its spans through its own API.
        self.processor = getattr(self.tracer, "span_processor", None)
        self.resource = getattr(self.tracer, "resource", None)
        self.scope = InstrumentationScope("plait", plait.__version__)  # as get_tracer made it
        if self.ids is None or self.resource is None:
            self.processor = None
        else:
            self.new_span_id = self.ids.inner.generate_span_id

    def listener(self, run_id: str, entry: str) -> ev.Listener:
        """The listener of a dataset job `run_id` (its rows' runs find its span)."""
        return _JobTrace(self, run_id, entry).on_event

    def run_tracer(self, run_id: str, entry: str, nodes: Any) -> _RunTrace:
        """What traces run `run_id`, whose node columns are `nodes` (see ev.CallTracer)."""
        return _RunTrace(self, run_id, entry, self.jobs.get(run_id), nodes)

    def tool_span(self, tool: str) -> tuple[str, dict[str, Any]]:
        """The name and constant attributes of tool `tool`'s spans (kept per tool)."""
        known = (f"execute_tool {tool}", {"gen_ai.operation.name": "execute_tool",
                                          "gen_ai.tool.name": tool,
                                          "gen_ai.tool.type": "function"})
        if len(self.tool_spans) < 1024:
            self.tool_spans[tool] = known
        return known

    def emit(self, run: _RunTrace, name: str, kind: SpanKind, attributes: dict[str, Any],
             start: int, end: int, events: Sequence[Event], status: Status) -> None:
        """An ended node span under `run`'s span, through the tracing API (a tracer
        that is not the SDK's; the SDK's is served inline, see `_node_span`)."""
        span = self.tracer.start_span(name, context=run.context, kind=kind,
                                      attributes=attributes, start_time=start)
        for event in events:
            span.add_event(event.name, event.attributes, event.timestamp)
        if status is not _UNSET:
            span.set_status(status)
        span.end(end_time=end)

    def top_span(self, name: str, run_id: str, attributes: dict[str, Any], t: float) -> Any:
        """The span of a run or job: under the caller's current span if there is one,
        else the root of the run's own trace."""
        if trace.get_current_span().get_span_context().is_valid:
            return self.tracer.start_span(name, attributes=attributes, start_time=_ns(t))
        if self.ids is None:
            return self.tracer.start_span(name, context=_NO_CONTEXT, attributes=attributes,
                                          start_time=_ns(t))
        token = self.ids.next.set(trace_id_of(run_id))
        try:
            return self.tracer.start_span(name, context=_NO_CONTEXT, attributes=attributes,
                                          start_time=_ns(t))
        finally:
            self.ids.next.reset(token)


def _short(entry: str) -> str:
    """A workflow's name for a span name: `module:outer.<locals>.wf` -> `wf`."""
    return entry.rpartition(":")[2].rpartition(".")[2] or entry


def _end_top(span: Any, status: str, t: float) -> None:
    span.set_attribute("plait.run.status", status)
    if status == "failed":
        span.set_status(Status(StatusCode.ERROR, "the run failed"))
    span.end(end_time=_ns(t))


class _JobTrace:
    """A dataset job's span: its rows' runs find it by the job's run id."""

    __slots__ = ("tracing", "run_id", "entry", "span")

    def __init__(self, tracing: Tracing, run_id: str, entry: str) -> None:
        self.tracing = tracing
        self.run_id = run_id
        self.entry = entry
        self.span: Any = None

    def on_event(self, event: ev.Event) -> None:
        kind = type(event)
        try:
            if kind is ev.RunStarted:
                name = self.entry[len("map:"):]
                self.span = self.tracing.top_span(
                    f"plait.map {_short(name)}", self.run_id,
                    {"plait.run.id": self.run_id, "plait.run.entry": scrub(self.entry)},
                    event.t)
                self.tracing.jobs[self.run_id] = self.span
            elif kind is ev.RunFinished and self.span is not None:
                self.tracing.jobs.pop(self.run_id, None)
                _end_top(self.span, event.status, event.t)  # type: ignore[attr-defined]
                self.span = None
        except Exception as exc:  # tracing never fails a job
            self.tracing.jobs.pop(self.run_id, None)
            _warn(f"tracing of job {self.run_id} stopped: {ev.describe(exc)}")


class _RunTrace:
    """One run's spans. Per-node state lives from the node's start to its end (its
    start time, its retries); a call's tool, arguments and parents are read from the
    run's node columns when its span is made."""

    __slots__ = ("tracing", "run_id", "entry", "job", "row", "span", "context", "parent",
                 "trace", "tools", "arguments", "parents", "starts", "retries", "attempts")

    def __init__(self, tracing: Tracing, run_id: str, entry: str, job: Any, nodes: Any) -> None:
        self.tracing = tracing
        self.run_id = run_id
        self.entry = entry
        self.job = job
        self.row = ev.current_row.get() if job is not None else None
        self.span: Any = None
        self.context: Context | None = None  # the run span's, once it is recording
        self.parent: SpanContext | None = None  # the run span's
        self.trace: tuple[int, Any, Any] = (0, None, None)  # its trace id, flags and state
        # The run's columns by node id (lists it appends to; see plait.runtime._engine._Nodes).
        self.tools: Sequence[Any] = nodes.tools
        self.arguments: Sequence[Mapping[str, Any]] = nodes.arguments
        self.parents: Sequence[tuple[int, ...]] = nodes.parents
        self.starts: dict[int, float] = {}
        self.retries: dict[int, list[ev.NodeRetried]] = {}
        self.attempts: dict[int, int] = {}

    # Tracing never fails a run: an error in any of these ends this run's tracing,
    # once said.

    def started(self, i: int, t: float, attempt: int) -> None:
        if self.context is None:  # not started, sampled out or ended: nothing to keep
            return
        if attempt == 1:
            self.starts[i] = t
        else:  # the span covers every attempt: it keeps the first one's start
            self.attempts[i] = attempt

    def finished(self, i: int, t: float, value: Any, replayed: bool, tokens: int,
                 record: Mapping[str, Any] | None) -> None:
        if self.context is None:
            return
        try:
            self._node_span(i, t, None, value, tokens, record, replayed)
        except Exception as exc:
            self._stop(exc)

    def on_event(self, event: Any) -> None:
        # Every event of the run; a call's start and end come as `started` and
        # `finished`, so the per-call events (when a listener has them built) have
        # no handler here.
        try:
            if self.context is None:  # not started, sampled out or ended: a start counts
                if type(event) is ev.RunStarted:
                    self._started(event)
                return
            handle = _HANDLERS.get(type(event))
            if handle is not None:
                handle(self, event)
        except Exception as exc:
            self._stop(exc)

    def _stop(self, exc: Exception) -> None:
        self.context = None
        self.starts.clear()
        _warn(f"tracing of run {self.run_id} stopped: {ev.describe(exc)}")

    # ------------------------------------------------------------ the run

    def _started(self, e: ev.RunStarted) -> None:
        attributes: dict[str, Any] = {"plait.run.id": self.run_id,
                                      "plait.run.entry": scrub(self.entry)}
        if self.job is not None:
            name = "plait.row"
            if self.row is not None:
                attributes["plait.row.ordinal"] = self.row[0]
                if self.tracing.capture:  # a key column's value is the row's data
                    attributes["plait.row.key"] = scrub(self.row[1])
            self.span = self.tracing.tracer.start_span(
                name, context=trace.set_span_in_context(self.job), attributes=attributes,
                start_time=_ns(e.t))
        else:
            asked = self.entry.startswith("ask:")
            attributes["gen_ai.operation.name"] = "invoke_agent" if asked else "invoke_workflow"
            name = "plait.ask" if asked else f"plait.run {_short(self.entry)}"
            self.span = self.tracing.top_span(name, self.run_id, attributes, e.t)
        if self.span.is_recording():  # sampled out: no node spans either
            self.context = trace.set_span_in_context(self.span)
            parent = self.parent = self.span.get_span_context()
            self.trace = (parent.trace_id, parent.trace_flags, parent.trace_state)

    def _finished(self, e: ev.RunFinished) -> None:
        self.span.set_attribute("plait.run.nodes", len(self.tools))
        _end_top(self.span, e.status, e.t)
        self.context = None

    # ------------------------------------------------------------ nodes

    def _retried(self, e: ev.NodeRetried) -> None:
        self.retries.setdefault(e.node, []).append(e)

    def _failed(self, e: ev.NodeFailed) -> None:
        self._node_span(e.node, e.t, e.error)

    def _cancelled(self, e: ev.NodeCancelled) -> None:
        self._node_span(e.node, e.t, None, ended="cancelled")

    def _skipped(self, e: ev.NodeSkipped) -> None:
        i = e.node
        if i in self.starts:  # it ran and was waiting to retry when the run stopped
            self._node_span(i, e.t, None, ended="skipped")
            return
        # It never ran: no span of its own, a mark on the run's.
        self.retries.pop(i, None)
        self.attempts.pop(i, None)
        self.span.add_event("plait.node.skipped",
                            {"plait.node.id": i, "gen_ai.tool.name": e.tool,
                             "plait.node.cause": e.cause}, timestamp=_ns(e.t))

    def _node_span(self, i: int, t: float, error: str | None, value: Any = None,
                   tokens: int = 0, record: Mapping[str, Any] | None = None,
                   replayed: bool = False, ended: str | None = None) -> None:
        """The span of call `i`, which ended at `t`: made and handed over now."""
        start = self.starts.pop(i, t)
        tool = self.tools[i].name
        arguments = self.arguments[i]
        request = is_llm_request(arguments) if "request" in arguments else None
        tracing = self.tracing
        capture = tracing.capture
        if request is not None:
            attributes = llm_attributes(request, tokens, record, replayed)
            attributes["plait.llm.role"] = tool
            name = f"chat {attributes['gen_ai.request.model']}"
            kind = _CLIENT
            if capture:
                attributes["gen_ai.input.messages"] = input_messages(request)
                if error is None and ended is None:
                    attributes["gen_ai.output.messages"] = output_messages(value, record)
        else:
            known = tracing.tool_spans.get(tool)
            if known is None:
                known = tracing.tool_span(tool)
            name, attributes = known[0], known[1].copy()
            if tokens:
                attributes["plait.tokens"] = tokens
            kind = _INTERNAL
            if capture:
                attributes["gen_ai.tool.call.arguments"] = content(dict(arguments))
                if error is None and ended is None:
                    attributes["gen_ai.tool.call.result"] = content(value)
        attributes["plait.node.id"] = i
        parents = self.parents[i]
        if parents:
            attributes["plait.node.parents"] = parents
        if replayed:
            attributes["plait.replayed"] = True
        if self.attempts:
            attempts = self.attempts.pop(i, None)
            if attempts:
                attributes["plait.node.attempts"] = attempts
        if ended is not None:  # it did not end by itself: cancelled, or skipped mid-retry
            attributes["plait.node.status"] = ended
        events: list[Event] | tuple[()] = ()
        if self.retries and i in self.retries:
            events = [_retry_event(r) for r in self.retries.pop(i)]
        status = _UNSET
        if error is not None:
            kind_, _, message = error.partition(": ")
            attributes["error.type"] = kind_
            events = [*events, Event("exception", {"exception.type": kind_,
                                                   "exception.message": scrub(message or error)},
                                     _ns(t))]
            status = Status(StatusCode.ERROR, scrub(error))
        processor = tracing.processor
        if processor is None:
            tracing.emit(self, name, kind, attributes, _ns(start), _ns(t), events, status)
            return
        # The SDK's path, inline: it runs once per call of every traced run.
        trace_id, flags, state = self.trace
        processor.on_end(ReadableSpan(
            name, SpanContext(trace_id, tracing.new_span_id(), False, flags, state),
            self.parent, tracing.resource, attributes, events, (), kind, None, status,
            _BASE_NS + int(start * 1e9), _BASE_NS + int(t * 1e9), tracing.scope))


def _retry_event(r: ev.NodeRetried) -> Event:
    kind, _, message = r.error.partition(": ")
    return Event("plait.node.retry", {
        "plait.node.attempt": r.attempt, "plait.retry.delay_s": r.delay,
        "exception.type": kind, "exception.message": scrub(message or r.error)}, _ns(r.t))


_HANDLERS: dict[type, Callable[[_RunTrace, Any], None]] = {
    ev.RunFinished: _RunTrace._finished,
    ev.NodeRetried: _RunTrace._retried,
    ev.NodeFailed: _RunTrace._failed,
    ev.NodeCancelled: _RunTrace._cancelled,
    ev.NodeSkipped: _RunTrace._skipped,
}
