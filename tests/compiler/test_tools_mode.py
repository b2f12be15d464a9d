"""`ask(mode="tools")`: the model's native function calling, over plait's HTTP
backend against the simulated server. Each batch of calls runs in parallel as
nodes of the run; bad calls go back to the model; a journaled question resumes
without paying a finished LLM call or tool call twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import plait
from plait.cli._app import app
from plait.compiler import aask
from plait.llm import LLMHTTPError, LLMOptionError, Message, OpenAILLM, SimServer

TOOL_S = 0.4
ran: Counter[str] = Counter()


@plait.tool(idempotent=True)
async def height(mountain: str) -> int:
    """A mountain's height in metres."""
    ran[mountain] += 1
    await asyncio.sleep(TOOL_S)
    return {"K2": 8611, "Everest": 8849, "Denali": 6190}[mountain]


@plait.tool(idempotent=True)
async def compare(a: int, b: int) -> str:
    """Which of two numbers is larger."""
    ran["compare"] += 1
    return "a" if a > b else "b"


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    ran.clear()


def tool_results(messages: list[Message]) -> list[str]:
    return [m.content for m in messages if m.role == "tool"]


def three_steps(messages: list[Message], role: str | None) -> dict:
    """A good function-calling model: the independent lookups in one batch, the
    comparison (which needs both) in the next, then the answer."""
    assert role == "caller"
    results = tool_results(messages)
    if not results:
        return {"tool_calls": [{"name": "height", "arguments": {"mountain": m}}
                               for m in ("K2", "Everest", "Denali")]}
    if len(results) == 3:
        return {"tool_calls": [{"name": "compare",
                                "arguments": {"a": int(results[0]), "b": int(results[1])}}]}
    return {"content": f"Everest is taller ({results[1]} m against {results[0]} m)."}


@pytest.fixture
def server() -> Iterator[SimServer]:
    with SimServer(three_steps, ttft=0.05, tps=400) as s:
        yield s


def http(server: SimServer) -> OpenAILLM:
    return OpenAILLM("sim", base_url=server.base_url)


async def test_parallel_batches_over_http(server) -> None:
    started = time.perf_counter()
    async with http(server) as llm:
        answer = await aask("Which is taller, K2 or Everest?", [height, compare], model=llm,
                            mode="tools")
    elapsed = time.perf_counter() - started
    assert answer.text == "Everest is taller (8849 m against 8611 m)."
    assert answer.mode == "tools"
    assert [(t.number, t.tool, t.state, t.value) for t in answer.tasks] == [
        (1, "height", "done", 8611), (2, "height", "done", 8849), (3, "height", "done", 6190),
        (4, "compare", "done", "b")]
    # The three lookups of step 1 overlapped: each started before any ended.
    first = answer.tasks[:3]
    assert max(t.started_at for t in first) < min(t.finished_at for t in first)
    assert elapsed < 3 * TOOL_S + 0.5  # not one after another
    assert [p.tasks for p in answer.plans] == [(1, 2, 3), (4,), ()]
    assert answer.plans[0].text.splitlines()[0] == 'height({"mountain": "K2"})'
    # Three LLM calls, every one measured: tokens from the server, a first token.
    assert [c.role for c in answer.llm_calls] == ["caller"] * 3
    assert all(not c.estimated and c.first_token_at is not None for c in answer.llm_calls)
    assert answer.llm_calls[0].completion_tokens == 3 * (1 + 2)  # name, then `{"mountain":` `"K2"}`
    assert answer.prompt_tokens > 0 and server.stats.as_dict()["received"] == 3
    assert answer.elapsed <= answer.critical_path_bound() * 1.3 + 0.1


async def test_bad_calls_go_back_to_the_model(tmp_path) -> None:
    seen: list[list[str]] = []

    def script(messages: list[Message], role: str | None) -> dict:
        results = tool_results(messages)
        seen.append(results)
        if not results:
            return {"tool_calls": [
                {"name": "altitude", "arguments": {"mountain": "K2"}},  # no such tool
                {"name": "height", "arguments": "{not json"},
                {"name": "height", "arguments": {"mountain": "K2", "units": "ft"}},
                {"name": "height", "arguments": {"mountain": "Nowhere"}},  # the tool fails
                {"name": "height", "arguments": {"mountain": "K2"}},
            ]}
        return {"content": "K2 is 8611 m."}

    with SimServer(script, ttft=0.01, tps=1000) as s:
        async with http(s) as llm:
            answer = await aask("How high is K2?", [height, compare], model=llm, mode="tools")
    assert answer.text == "K2 is 8611 m."
    errors = seen[-1]
    assert errors[0] == "ERROR: no tool 'altitude'; tools: height, compare"
    assert errors[1].startswith("ERROR: the arguments of height are not JSON")
    assert errors[2].startswith("ERROR: tool 'height': argument 'units'")
    assert errors[3].startswith("ERROR: KeyError") and "Nowhere" in errors[3]
    assert errors[4] == "8611"
    # The calls that were made are tasks (the failing one too); the bad ones are not.
    assert [(t.call, t.state) for t in answer.tasks] == [
        ('height({"mountain": "Nowhere"})', "failed"), ('height({"mountain": "K2"})', "done")]


async def test_resume_pays_no_llm_call_or_tool_call_twice(tmp_path) -> None:
    journal = str(tmp_path / "runs.db")
    calls: Counter[int] = Counter()  # LLM calls the model saw, by step

    def script(messages: list[Message], role: str | None) -> dict:
        calls[sum(1 for m in messages if m.role == "assistant")] += 1
        return three_steps(messages, role)

    # The first try dies at step 2: the server refuses the call (HTTP 400, not retried).
    def refusing(messages: list[Message], role: str | None) -> dict:
        if sum(1 for m in messages if m.role == "assistant") == 1:
            calls[1] += 1
            raise LLMOptionError("refused")
        return script(messages, role)

    with SimServer(refusing, ttft=0.01, tps=1000) as s:
        async with http(s) as llm:
            with pytest.raises(LLMHTTPError, match="400"):
                await aask("Which is taller?", [height, compare], model=llm, mode="tools",
                           journal=journal, run_id="q1")
    assert calls == {0: 1, 1: 1} and ran == {"K2": 1, "Everest": 1, "Denali": 1}

    with SimServer(script, ttft=0.01, tps=1000) as s:
        async with http(s) as llm:
            answer = await aask("Which is taller?", [height, compare], model=llm,
                                mode="tools", journal=journal, run_id="q1")
    assert answer.text.startswith("Everest is taller")
    # step 0 and its three lookups came from the journal; steps 1 and 2 ran now
    assert calls == {0: 1, 1: 2, 2: 1}
    assert ran == {"K2": 1, "Everest": 1, "Denali": 1, "compare": 1}
    assert [c.replayed for c in answer.llm_calls] == [True, False, False]

    # Asked again when done: everything replayed, nothing paid.
    with SimServer(script, ttft=0.01, tps=1000) as s:
        async with http(s) as llm:
            again = await aask("Which is taller?", [height, compare], model=llm, mode="tools",
                               journal=journal, run_id="q1", allow_rerun=True)
        assert s.stats.as_dict()["received"] == 0
    assert again.text == answer.text and all(c.replayed for c in again.llm_calls)
    assert ran["K2"] == 1 and ran["compare"] == 1


async def test_out_of_steps_the_model_must_answer() -> None:
    def script(messages: list[Message], role: str | None) -> dict:
        if messages[-1].content.startswith("No more tool calls"):
            return {"content": "I could not find it."}
        n = len(tool_results(messages))
        return {"tool_calls": [{"name": "height", "arguments": {"mountain": "K2"},
                                "id": f"call_{n}"}]}

    with SimServer(script, ttft=0.0, tps=2000) as s:
        async with http(s) as llm:
            answer = await aask("Loop?", [height], model=llm, mode="tools", max_steps=2)
    assert answer.text == "I could not find it."
    assert len(answer.plans) == 3 and answer.plans[-1].tasks == ()
    assert ran["K2"] == 2  # one call a step: the last step may call no tool


def test_the_local_model_says_it_cannot_call_functions() -> None:
    pytest.importorskip("llama_cpp")
    with pytest.raises(LLMOptionError, match="no native tool calling"):
        plait.ask("How high is K2?", [height], model="local", mode="tools")


def test_ask_mode_tools_from_the_cli(tmp_path: Path, monkeypatch) -> None:
    from plait.examples import tools

    monkeypatch.setattr(tools, "LATENCY", (0.01, 0.02))
    script = [
        {"role": "caller", "match": "K2", "times": 1, "tool_calls": [
            {"name": "search", "arguments": {"entity": "K2"}},
            {"name": "search", "arguments": {"entity": "Mount Everest"}}]},
        {"role": "caller", "reply": "Everest is taller than K2."},
    ]
    path = tmp_path / "fc.json"
    path.write_text(json.dumps(script))
    journal = str(tmp_path / "runs.db")
    result = CliRunner().invoke(app, [
        "ask", "Which is taller, K2 or Mount Everest?", "--mode", "tools", "--journal", journal,
        "--model", f"sim:ttft=0,tps=2000,script={path}", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["answer"] == "Everest is taller than K2." and out["mode"] == "tools"
    assert [t["call"] for t in out["tasks"]] == [
        'search({"entity": "K2"})', 'search({"entity": "Mount Everest"})']
    assert all(t["state"] == "done" for t in out["tasks"])
