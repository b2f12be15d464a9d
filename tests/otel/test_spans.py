"""Runs as traces, in process, into the SDK's in-memory exporter: the span tree,
overlapping siblings, GenAI attributes, retries and errors, content capture and
secrets, resume, dataset jobs, and tracing off."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import plait
import plait.otel
from plait.runtime._engine import Run
from plait.otel._hook import _state

SECRET = "hunter2-do-not-export"
PRIVATE = "the patient's private note"


@plait.tool
async def search(q: str) -> str:
    """Waits, then echoes."""
    await asyncio.sleep(0.05)
    return f"found {q}"


@plait.tool
async def combine(a: str, b: str, c: str) -> str:
    """Joins."""
    return " | ".join((a, b, c))


@plait.workflow
async def fan(topic: str) -> str:
    a, b, c = search(topic), search(topic + " 2"), search(topic + " 3")
    return await combine(a, b, c)


def by_name(spans: Sequence[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def the(spans: Sequence[ReadableSpan], prefix: str) -> ReadableSpan:
    found = by_name(spans, prefix)
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def every_text(spans: Sequence[ReadableSpan]) -> str:
    """Every attribute and event attribute of every span, as one text."""
    parts = []
    for s in spans:
        parts.append(s.name)
        parts.append(json.dumps(dict(s.attributes or {}), default=str))
        parts.append(s.status.description or "")
        for e in s.events:
            parts.append(json.dumps(dict(e.attributes or {}), default=str))
    return "\n".join(parts)


def test_a_run_is_a_trace_of_sibling_node_spans_that_overlap(spans: InMemorySpanExporter) -> None:
    result = plait.run(fan, "Everest")
    got = spans.get_finished_spans()
    run = the(got, "plait.run fan")
    assert run.parent is None  # the root of the run's own trace
    assert format(run.context.trace_id, "032x") == plait.otel.trace_id(result.run_id)
    assert run.attributes["plait.run.id"] == result.run_id
    assert run.attributes["plait.run.status"] == "done"
    assert run.attributes["plait.run.nodes"] == 4
    searches = sorted(by_name(got, "execute_tool search"), key=lambda s: s.attributes["plait.node.id"])
    join = the(got, "execute_tool combine")
    assert len(searches) == 3 and len(got) == 5
    for s in (*searches, join):  # every node a child of the run, in its trace
        assert s.parent is not None and s.parent.span_id == run.context.span_id
        assert s.context.trace_id == run.context.trace_id
        assert s.attributes["gen_ai.operation.name"] == "execute_tool"
        assert run.start_time <= s.start_time <= s.end_time <= run.end_time
    # The three searches ran at once: each started before any of them ended.
    assert max(s.start_time for s in searches) < min(s.end_time for s in searches)
    assert all(s.end_time - s.start_time >= 40e6 for s in searches)  # the 50 ms sleep
    assert join.start_time >= max(s.end_time for s in searches)
    assert join.attributes["plait.node.parents"] == (0, 1, 2)
    assert join.attributes["gen_ai.tool.name"] == "combine"


@plait.workflow
async def two_calls(topic: str) -> list[str]:
    a = plait.generate(f"One fact about {topic}.", model="sim", max_tokens=20)
    b = plait.generate(f"Another fact about {topic}.", model="sim", max_tokens=20)
    return [await a, await b]


def test_llm_calls_carry_the_genai_attributes(spans: InMemorySpanExporter) -> None:
    plait.run(two_calls, "K2")
    got = spans.get_finished_spans()
    calls = by_name(got, "chat ")
    assert len(calls) == 2
    for call in calls:
        a = call.attributes
        assert call.name == "chat sim" and call.kind is SpanKind.CLIENT
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "plait.sim"
        assert a["gen_ai.request.model"] == "sim"
        assert a["gen_ai.request.max_tokens"] == 20
        assert a["gen_ai.request.temperature"] == 0.0
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["plait.tokens"] == a["gen_ai.usage.input_tokens"] + a["gen_ai.usage.output_tokens"]
        assert a["plait.llm.role"] == "generate"
        assert a["plait.llm.ttft_s"] >= 0
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert max(c.start_time for c in calls) < min(c.end_time for c in calls)  # in parallel
    assert "fact about" not in every_text(got)  # the prompts are not exported by default


def test_an_openai_spec_names_its_provider_and_model() -> None:
    from plait.otel._attrs import model_of

    assert model_of("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini", "openai:gpt-4o-mini")
    assert model_of("openai:llama3:8b,max_concurrency=4")[:2] == ("openai", "llama3:8b")
    assert model_of("local")[0] == "plait.local"
    provider, name, spec = model_of(f"openai:m,base=https://u:{SECRET}@h/v1")
    assert SECRET not in name + spec


def test_retries_and_errors_are_span_events_and_error_status(spans: InMemorySpanExporter) -> None:
    tries: list[int] = []

    @plait.tool(retries=2, backoff=0.01, jitter=0)
    async def flaky(x: int) -> int:
        """Fails twice, then works."""
        tries.append(x)
        if len(tries) < 3:
            raise ConnectionError(f"reset by https://user:{SECRET}@example.com")
        return x

    @plait.tool
    async def broken(x: int) -> int:
        """Always fails."""
        raise ValueError(f"no good: password={SECRET}")

    @plait.workflow
    async def wf() -> Any:
        a = flaky(1)
        b = broken(2)
        return [await a, await b]

    result = plait.run(wf, on_error="continue", raise_on_error=False)
    assert not result.ok
    got = spans.get_finished_spans()
    run = the(got, "plait.run wf")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["plait.run.status"] == "failed"
    ok = the(got, "execute_tool flaky")
    retries = [e for e in ok.events if e.name == "plait.node.retry"]
    assert [e.attributes["plait.node.attempt"] for e in retries] == [2, 3]
    assert all(e.attributes["exception.type"] == "ConnectionError" for e in retries)
    assert ok.attributes["plait.node.attempts"] == 3
    assert ok.status.status_code is StatusCode.UNSET
    assert ok.start_time < retries[0].timestamp < ok.end_time  # one span for every attempt
    bad = the(got, "execute_tool broken")
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes["error.type"] == "ValueError"
    (exception,) = [e for e in bad.events if e.name == "exception"]
    assert exception.attributes["exception.type"] == "ValueError"
    assert "no good" in exception.attributes["exception.message"]
    assert SECRET not in every_text(got)  # in a URL or as password=: blanked


@plait.tool
async def note(text: str) -> str:
    """Echoes a private text."""
    return f"noted: {text}"


@plait.workflow
async def private(text: str) -> list[str]:
    answer = plait.generate(f"Summarize: {text}", model="sim")
    return [await note(text), await answer]


def test_no_argument_or_value_text_by_default(spans: InMemorySpanExporter) -> None:
    plait.run(private, PRIVATE)
    text = every_text(spans.get_finished_spans())
    assert "execute_tool note" in text and "chat sim" in text
    assert "private note" not in text and "simulated reply" not in text


def test_capture_is_opt_in_and_still_blanks_secrets(provider: TracerProvider) -> None:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plait.otel.enable(provider, capture_content=True)
    plait.run(private, f"{PRIVATE}; api_key={SECRET}")
    got = exporter.get_finished_spans()
    tool = the(got, "execute_tool note")
    assert PRIVATE in tool.attributes["gen_ai.tool.call.arguments"]
    assert tool.attributes["gen_ai.tool.call.result"].startswith("noted: ")
    llm = the(got, "chat sim")
    messages = json.loads(llm.attributes["gen_ai.input.messages"])
    assert messages[0]["role"] == "user" and PRIVATE in messages[0]["parts"][0]["content"]
    reply = json.loads(llm.attributes["gen_ai.output.messages"])
    assert reply[0]["role"] == "assistant" and reply[0]["parts"][0]["content"]
    assert SECRET not in every_text(got)


def test_the_process_environment_turns_capture_on(provider: TracerProvider,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_OTEL_CAPTURE_CONTENT", "1")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plait.otel.enable(provider)
    plait.run(private, PRIVATE)
    assert PRIVATE in the(exporter.get_finished_spans(), "execute_tool note").attributes[
        "gen_ai.tool.call.arguments"]


def test_a_resumed_run_continues_its_trace(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    fail = [True]

    @plait.tool
    async def first(x: int) -> int:
        """Works."""
        return x + 1

    @plait.tool
    async def second(x: int) -> int:
        """Fails in the first session."""
        if fail[0]:
            raise RuntimeError("not yet")
        return x * 2

    @plait.workflow
    async def wf(x: int) -> int:
        return await second(first(x))

    journal = str(tmp_path / "runs.db")
    failed = plait.run(wf, 1, journal=journal, raise_on_error=False)
    assert not failed.ok
    fail[0] = False
    done = plait.resume(failed.run_id, journal, workflow_fn=wf)
    assert done.value == 4
    got = spans.get_finished_spans()
    runs = by_name(got, "plait.run wf")
    assert len(runs) == 2  # a run span per session, both roots of the run's trace
    assert {format(s.context.trace_id, "032x") for s in got} == {plait.otel.trace_id(done.run_id)}
    assert all(r.parent is None for r in runs)
    replayed = [s for s in by_name(got, "execute_tool first") if s.attributes.get("plait.replayed")]
    assert len(replayed) == 1 and replayed[0].parent.span_id == runs[1].context.span_id


def test_a_run_inside_a_span_of_the_callers_is_its_child(spans: InMemorySpanExporter,
                                                         provider: TracerProvider) -> None:
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        plait.run(fan, "x")
    got = spans.get_finished_spans()
    run = the(got, "plait.run fan")
    assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id
    assert run.context.trace_id == request.get_span_context().trace_id


@plait.workflow
async def per_row(row: dict) -> dict:
    a, b = search(row["q"]), search(row["q"] + "!")
    return {"q": row["q"], "a": await a, "b": await b}


def test_a_dataset_job_is_one_trace_of_rows(spans: InMemorySpanExporter) -> None:
    result = plait.map(per_row, [{"q": f"question {i}"} for i in range(20)], window=8)
    assert result.rows_done == 20
    got = spans.get_finished_spans()
    job = the(got, "plait.map per_row")
    assert job.parent is None
    assert format(job.context.trace_id, "032x") == plait.otel.trace_id(result.run_id)
    rows = by_name(got, "plait.row")
    assert sorted(r.attributes["plait.row.ordinal"] for r in rows) == list(range(20))
    assert all(r.parent.span_id == job.context.span_id for r in rows)
    row_ids = {r.context.span_id for r in rows}
    nodes = by_name(got, "execute_tool search")
    assert len(nodes) == 40 and all(n.parent.span_id in row_ids for n in nodes)
    assert {s.context.trace_id for s in got} == {job.context.trace_id}
    assert "question" not in every_text(got)  # row data stays out (keys too)
    assert _state.explicit is not None and _state.explicit.jobs == {}  # nothing kept


class _Counting(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


@plait.tool
async def bump(x: int) -> int:
    """One more."""
    return x + 1


@plait.workflow
async def small_row(row: dict) -> int:
    return await bump(row["x"])


def _peak_mb(rows: int) -> float:
    gc.collect()
    tracemalloc.start()
    plait.map(small_row, ({"x": i} for i in range(rows)), window=64)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def test_a_long_job_holds_no_span_it_has_ended(provider: TracerProvider) -> None:
    """Spans go to the batching processor as rows end: the memory of a traced job
    does not grow with its rows (what a 100,000-row job relies on)."""
    exporter = _Counting()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=512,
                                                   schedule_delay_millis=10))
    plait.otel.enable(provider)
    small, large = _peak_mb(300), _peak_mb(1200)
    provider.force_flush()
    assert exporter.count > 600  # spans were made and exported (some may be dropped)
    # 900 more rows of 2 spans (~1.7 KB each) would be ~3 MB more if they were kept.
    assert large - small < 1, (small, large)


def test_tracing_off_gives_a_run_no_listener() -> None:
    run = Run()
    assert run.listeners == () and run.tracer is None  # so the engine builds no event at all


def _per_call_events_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the per-call events the engine builds from here on (it builds them
    through the module, so a stand-in there sees each one)."""
    from plait.runtime import _events as ev

    built: list[str] = []
    for name in ("NodeAdded", "NodeReady", "NodeStarted", "NodeFinished"):
        kind = getattr(ev, name)

        def make(*args: Any, _kind: Any = kind) -> Any:
            built.append(_kind.__name__)
            return _kind(*args)

        monkeypatch.setattr(ev, name, make)
    return built


def test_tracing_alone_builds_no_per_call_event(spans: InMemorySpanExporter,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing learns of a call's start and end without the four events a listener
    gets: they were most of what tracing cost per call."""
    built = _per_call_events_built(monkeypatch)
    plait.run(fan, "x", max_concurrency=1)
    assert built == []
    got = spans.get_finished_spans()
    assert len(by_name(got, "execute_tool")) == 4
    assert the(got, "execute_tool combine").attributes["plait.node.parents"] == (0, 1, 2)
    plait.run(fan, "x", listeners=[lambda event: None])  # a listener of the caller's: built
    assert sorted(set(built)) == ["NodeAdded", "NodeFinished", "NodeReady", "NodeStarted"]


def test_a_listener_sees_the_same_events_with_tracing_on(provider: TracerProvider) -> None:
    """The tracer takes the per-call events' short cut; a listener of the caller's
    still gets every event, once, in the same order as without tracing."""
    tries: list[int] = []

    @plait.tool(retries=1, backoff=0.001, jitter=0)
    async def flaky(x: int) -> int:
        """Fails once."""
        tries.append(x)
        if len(tries) % 2:
            raise ConnectionError("reset")
        return x

    @plait.workflow
    async def wf() -> list[str]:
        a, b = search("a"), search("b")
        return [await combine(a, b, search("c")), await flaky(1)]

    def events_of_a_run() -> list[tuple[Any, ...]]:
        seen: list[Any] = []
        tries.clear()
        plait.run(wf, max_concurrency=2, listeners=[seen.append])  # some wait for a slot
        return [(type(e).__name__, getattr(e, "node", None), getattr(e, "attempt", None))
                for e in seen]

    plait.otel.disable()
    untraced = events_of_a_run()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plait.otel.enable(provider)
    traced = events_of_a_run()
    assert sorted(traced) == sorted(untraced)  # parallel calls may interleave differently
    for node in range(5):  # per call: added, then ready and started per attempt, finished
        kinds = [k for k, n, _ in traced if n == node]
        assert kinds[:3] == ["NodeAdded", "NodeReady", "NodeStarted"]
        assert kinds[-1] == "NodeFinished"
        assert kinds.count("NodeReady") == kinds.count("NodeStarted") == (2 if node == 4 else 1)
    got = exporter.get_finished_spans()
    assert len(by_name(got, "execute_tool")) == 5
    assert the(got, "execute_tool flaky").attributes["plait.node.attempts"] == 2


def test_disable_wins_over_a_configured_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    plait.otel.disable()
    assert Run().listeners == () and Run().tracer is None


def test_enable_without_anywhere_to_send_says_so() -> None:
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        plait.otel.enable()


class _ApiOnlyProvider:
    """A tracer provider that is not the SDK's: plait uses only the tracing API."""

    def __init__(self, inner: TracerProvider) -> None:
        self.inner = inner

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return _ApiOnlyTracer(self.inner.get_tracer(*args, **kwargs))


class _ApiOnlyTracer(trace.Tracer):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_as_current_span(*args, **kwargs)


def test_any_tracer_provider_gets_the_same_spans(provider: TracerProvider) -> None:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plait.otel.enable(_ApiOnlyProvider(provider))
    plait.run(fan, "x")
    got = exporter.get_finished_spans()
    run = the(got, "plait.run fan")
    nodes = by_name(got, "execute_tool")
    assert len(nodes) == 4 and all(n.parent.span_id == run.context.span_id for n in nodes)
    searches = by_name(got, "execute_tool search")
    assert max(s.start_time for s in searches) < min(s.end_time for s in searches)


class _Broken:
    """A span processor that fails on every span it is handed."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        raise OSError("the processor broke")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_a_tracing_failure_never_fails_the_run(provider: TracerProvider) -> None:
    provider.add_span_processor(_Broken())
    plait.otel.enable(provider)
    with pytest.warns(RuntimeWarning, match="tracing of run .* stopped: OSError: the processor"):
        result = plait.run(fan, "x")
    assert result.value == "found x | found x 2 | found x 3"


@pytest.mark.parametrize(("environ", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, False),
    ({"OTEL_SERVICE_NAME": "x"}, False),  # naming a service exports nothing
])
def test_which_environments_turn_tracing_on(environ: dict[str, str], on: bool) -> None:
    from plait.otel._hook import env_configured

    assert env_configured(environ) is on
