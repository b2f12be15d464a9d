"""The CLI traced by the standard OTEL_* environment, into a real OTLP/HTTP receiver
on 127.0.0.1: `plait run`, a run killed with SIGKILL and resumed (one trace id),
`plait ask`; nothing private or secret in any exported byte. And the process's
own OpenTelemetry setup (a global provider), and a missing extra."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait.otel
from tests.durable.crash_child import ROOT, child_env, cli_command
from tests.otel import receiver as otlp

pytestmark = pytest.mark.timeout(120)

TOPIC = "Topic-Kept-Private-7c1e"
API_KEY = "sk-live-otlp-test-0123456789abcdef"
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2


@pytest.fixture
def receiver() -> Iterator[otlp.Receiver]:
    r = otlp.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def traced_env(receiver: otlp.Receiver, **more: str) -> dict[str, str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_")}
    env.update({"OTEL_SERVICE_NAME": "plait-test", "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OPENAI_API_KEY": API_KEY, **more})
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=90)


def named(spans: list[otlp.Span], prefix: str) -> list[otlp.Span]:
    return [s for s in spans if s.name.startswith(prefix)]


def assert_nothing_private(receiver: otlp.Receiver, *texts: str) -> None:
    body = b"".join(receiver.bodies)
    assert body
    for text in (API_KEY, *texts):
        assert text.encode() not in body, f"{text!r} was exported"


def test_plait_run_exports_its_trace_to_the_configured_endpoint(receiver: otlp.Receiver,
                                                                 tmp_path: Path) -> None:
    env = traced_env(receiver, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{receiver.url}/v1/traces")
    done = run_cli("run", "tests.otel.flows:brief", TOPIC, "--journal", str(tmp_path / "r.db"),
                   "--run-id", "brief-1", env=env)
    assert done.returncode == 0, done.stderr
    # The process flushed its batch at exit: every span is in.
    spans = receiver.wait_for(lambda s: len(s) >= 5)
    assert set(receiver.paths) == {"/v1/traces"}
    (run,) = named(spans, "plait.run brief")
    assert run.parent_id == "" and run.trace_id == plait.otel.trace_id("brief-1")
    assert run.resource["service.name"] == "plait-test" and run.scope == "plait"
    assert run.attributes["plait.run.status"] == "done"
    nodes = [s for s in spans if s is not run]
    assert sorted(s.name for s in nodes) == ["chat sim:ttft=0.05,tps=500", "execute_tool search",
                                             "execute_tool search", "execute_tool slow"]
    assert all(s.parent_id == run.span_id and s.trace_id == run.trace_id for s in nodes)
    a, b = named(spans, "execute_tool search")
    assert max(a.start, b.start) < min(a.end, b.end)  # parallel calls overlap
    (chat,) = named(spans, "chat ")
    assert chat.kind == SPAN_KIND_CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "plait.sim"
    assert chat.attributes["gen_ai.request.model"] == "sim:ttft=0.05,tps=500"
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert_nothing_private(receiver, TOPIC, "Summarize what is known")


def test_a_run_killed_and_resumed_stays_one_trace(receiver: otlp.Receiver, tmp_path: Path) -> None:
    env = traced_env(receiver, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{receiver.url}/v1/traces")
    journal = str(tmp_path / "r.db")
    proc = subprocess.Popen(
        cli_command("run", "tests.otel.flows:brief", TOPIC, "--journal", journal,
                    "--run-id", "crash-1"),
        cwd=ROOT, env={**env, "PLAIT_TEST_HANG": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        # The calls that finished before `slow` hung are exported within 100 ms.
        receiver.wait_for(lambda s: len(named(s, "execute_tool search")) == 2
                          and len(named(s, "chat ")) == 1)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    first = list(receiver.spans)
    assert not named(first, "plait.run")  # its run span never ended: killed mid-run
    done = run_cli("resume", "crash-1", "--journal", journal, env=env)
    assert done.returncode == 0, done.stderr
    spans = receiver.wait_for(lambda s: len(named(s, "plait.run")) == 1 and len(s) >= 8)
    assert {s.trace_id for s in spans} == {plait.otel.trace_id("crash-1")}
    (run,) = named(spans, "plait.run brief")
    second = [s for s in spans if s.parent_id == run.span_id]
    replayed = sorted(s.name for s in second if s.attributes.get("plait.replayed"))
    assert replayed == ["chat sim:ttft=0.05,tps=500", "execute_tool search", "execute_tool search"]
    (again,) = [s for s in second if not s.attributes.get("plait.replayed")]
    assert again.name == "execute_tool slow"  # in doubt at the kill, idempotent: run again
    (paid,) = [s for s in first if s.name.startswith("chat ")]
    (free,) = [s for s in second if s.name.startswith("chat ")]
    assert "gen_ai.usage.input_tokens" in paid.attributes  # paid in the first session
    assert "gen_ai.usage.input_tokens" not in free.attributes  # replayed: not paid twice
    assert free.attributes["plait.tokens"] == paid.attributes["plait.tokens"]
    assert_nothing_private(receiver, TOPIC)


def test_plait_ask_exports_planner_joiner_and_parallel_tools(receiver: otlp.Receiver,
                                                              tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"match": "Results:", "reply": json.dumps({"action": "finish", "answer": "Everest"})},
        {"match": "Question:", "reply": '1. search("Mount Everest")\n2. search("K2")\n3. join()'},
    ]))
    env = traced_env(receiver, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)  # the base URL
    done = run_cli("ask", "Which is taller, Mount Everest or K2?", "--model",
                   f"sim:ttft=0,tps=2000,script={script}", "--journal", str(tmp_path / "a.db"),
                   "--run-id", "ask-1", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Everest"
    spans = receiver.wait_for(lambda s: len(named(s, "plait.ask")) == 1)
    assert set(receiver.paths) == {"/v1/traces"}  # the signal path, added to the base URL
    (ask,) = named(spans, "plait.ask")
    assert ask.trace_id == plait.otel.trace_id("ask-1") and ask.parent_id == ""
    assert ask.attributes["gen_ai.operation.name"] == "invoke_agent"
    roles = sorted(s.attributes["plait.llm.role"] for s in named(spans, "chat "))
    assert roles == ["joiner", "planner"]
    searches = named(spans, "execute_tool search")
    assert len(searches) == 2 and all(s.parent_id == ask.span_id for s in searches)
    a, b = searches
    assert max(a.start, b.start) < min(a.end, b.end)
    assert_nothing_private(receiver, "Everest", "Which is taller")


GLOBAL_PROVIDER = """
import json, plait
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.otel.flows import search

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # the process's own setup: no OTEL_* at all

@plait.workflow
async def one(q):
    return await search(q)

result = plait.run(one, "x")
print(json.dumps({"run_id": result.run_id, "spans": [
    [s.name, format(s.context.trace_id, "032x")] for s in exporter.get_finished_spans()]}))
"""


def test_a_global_tracer_provider_of_the_process_is_used() -> None:
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", GLOBAL_PROVIDER], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert sorted(name for name, _ in out["spans"]) == ["execute_tool search", "plait.run one"]
    assert {t for _, t in out["spans"]} == {plait.otel.trace_id(out["run_id"])}


WITHOUT_OTEL = """
import sys, warnings
sys.modules["opentelemetry"] = None  # as if plait[otel] were not installed
import plait, plait.otel
from tests.otel.flows import search

@plait.workflow
async def one(q):
    return await search(q)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert plait.run(one, "x").value == "found x"  # the run goes on, untraced
print("warned:", [str(w.message) for w in caught])
try:
    plait.otel.enable()
except ImportError as exc:
    print("enable:", exc)
"""


def test_without_the_extra_a_configured_run_warns_and_enable_names_it() -> None:
    env = {**{k: v for k, v in child_env().items() if not k.startswith("OTEL_")},
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", WITHOUT_OTEL], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 30
    warned, enable = done.stdout.strip().splitlines()
    assert "pip install 'plait[otel]'" in warned and "OTEL_" in warned
    assert enable.startswith("enable: ") and "pip install 'plait[otel]'" in enable
