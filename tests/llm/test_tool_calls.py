"""OpenAI tool calling through plait's HTTP backend: `plait sim-server` streaming
scripted tool calls as the OpenAI API streams them (a real process on 127.0.0.1),
the in-process sim giving the same calls, tool messages on the wire, the local
model's refusal, and llama.cpp's own server answering a function-calling request."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from plait.llm import LLMOptionError, LocalLLM, Message, OpenAILLM, SimLLM, ToolCall
from plait.llm._protocol import build_request
from tests._support import end, free_port

from .test_cli_sim import CLI, wait_until_up

SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Look an entity up.",
    "parameters": {"type": "object", "properties": {"entity": {"type": "string"}},
                   "required": ["entity"]}}}
CALLS = [{"name": "search", "arguments": {"entity": "Mount Everest in Nepal"}},
         {"name": "search", "arguments": {"entity": "K2 of the Karakoram"}}]
SCRIPT = [{"role": "caller", "match": "taller", "tool_calls": CALLS},
          {"role": "caller", "reply": "K2 is lower than Everest."}]
QUESTION = [Message("user", "Which is taller, Everest or K2?")]


@pytest.fixture
def sim_process(tmp_path: Path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps(SCRIPT))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CLI, "sim-server", "--script", str(path),
                             "--ttft", "0.05", "--tps", "50", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(proc, base)
        yield base
    finally:
        end(proc)


def test_sim_server_streams_tool_calls_as_openai_does(sim_process) -> None:
    body = {"model": "sim", "messages": [{"role": "user", "content": "Which is taller?"}],
            "stream": True, "stream_options": {"include_usage": True}, "tools": [SEARCH],
            "parallel_tool_calls": True}
    with httpx.stream("POST", f"{sim_process}/chat/completions", json=body, timeout=10,
                      headers={"X-Plait-Role": "caller"}) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines()
                  if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    fragments = [f for d in deltas for f in d.get("tool_calls", ())]
    # Each call: a first fragment with index, id, type and name, then its arguments
    # in pieces (several chunks), under the same index.
    firsts = [f for f in fragments if "id" in f]
    assert [(f["index"], f["type"], f["function"]["name"], f["function"]["arguments"])
            for f in firsts] == [(0, "function", "search", ""), (1, "function", "search", "")]
    for k, call in enumerate(CALLS):
        pieces = [f["function"]["arguments"] for f in fragments if f["index"] == k and "id" not in f]
        assert len(pieces) > 2 and "id" not in fragments[fragments.index(firsts[k]) + 1]
        assert json.loads("".join(pieces)) == call["arguments"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    # The completion's tokens: a name is one, then the arguments' JSON text.
    assert chunks[-1]["usage"]["completion_tokens"] == len(fragments)


def test_http_backend_puts_calls_together_streamed_and_whole(sim_process, arun) -> None:
    async def body(stream: bool):
        llm = OpenAILLM("sim", base_url=sim_process, stream=stream)
        try:
            out = llm.stream(QUESTION, role="caller", tools=[SEARCH], parallel_tool_calls=True)
            text = "".join([d async for d in out])
            return text, out.tool_calls, out.usage
        finally:
            await llm.aclose()

    streamed, whole = arun(body(True)), arun(body(False))
    for text, calls, usage in (streamed, whole):
        assert text == ""
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [
            (c["name"], c["arguments"]) for c in CALLS]
        assert calls[0].id != calls[1].id and all(c.id.startswith("call_") for c in calls)
        assert usage.finish_reason == "tool_calls"
        assert usage.ttft_s >= 0.04
    assert streamed[1] == whole[1]  # the same calls, the same ids, either way
    # the in-process sim makes the same calls, ids included: modes compare on equal terms
    sim = SimLLM(SCRIPT, ttft=0.01, tps=500)
    local = arun(sim.complete(QUESTION, role="caller", tools=[SEARCH]))
    assert local.tool_calls == streamed[1]
    assert local.usage.completion_tokens == streamed[2].completion_tokens
    # ttft counts the first tool-call fragment: the arguments streamed after it
    # (at 50 tokens/s the arguments after the first fragment take >= 0.1 s; a loaded
    # machine may bunch the chunks, so the margin asked for is well under that)
    assert streamed[2].ttft_s < streamed[2].total_s - 0.04


def test_tool_messages_go_on_the_wire_and_a_text_answer_follows(sim_server, arun) -> None:
    seen: list[list[Message]] = []

    def script(messages, role):
        seen.append(list(messages))
        if not any(m.role == "tool" for m in messages):
            return {"tool_calls": CALLS}
        return {"content": "K2 is lower than Everest."}

    server = sim_server(script, ttft=0.0, tps=1000)

    async def body():
        llm = OpenAILLM("sim", base_url=server.base_url)
        try:
            first = await llm.complete(QUESTION, tools=[SEARCH], tool_choice="auto")
            answers = [Message("tool", f"{c.name} said {i}", tool_call_id=c.id)
                       for i, c in enumerate(first.tool_calls)]
            history = [*QUESTION, Message("assistant", "", first.tool_calls), *answers]
            return first, await llm.complete(history, tools=[SEARCH])
        finally:
            await llm.aclose()

    first, second = arun(body())
    assert second.text == "K2 is lower than Everest." and second.tool_calls == ()
    assert second.usage.finish_reason == "stop"
    # the server read back the assistant's calls and each answer's tool_call_id
    back = seen[-1]
    assert back[1].role == "assistant" and back[1].tool_calls == first.tool_calls
    assert [(m.tool_call_id, m.content) for m in back[2:]] == [
        (first.tool_calls[0].id, "search said 0"), (first.tool_calls[1].id, "search said 1")]


def test_request_body_and_options() -> None:
    llm = OpenAILLM("gpt", base_url="http://127.0.0.1:9/v1")
    call = ToolCall("call_1", "search", '{"entity": "K2"}')
    request = build_request(
        [Message("user", "q"), Message("assistant", "", (call,)),
         Message("tool", "8611 m", tool_call_id="call_1")],
        tools=[SEARCH["function"]], tool_choice="required", parallel_tool_calls=True)
    body = llm.body(request)
    assert body["tools"] == [SEARCH]  # a bare function definition is wrapped
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is True
    assert body["messages"][1] == {"role": "assistant", "content": None,
                                   "tool_calls": [call.as_openai()]}
    assert body["messages"][2] == {"role": "tool", "content": "8611 m", "tool_call_id": "call_1"}
    assert "tools" not in llm.body(build_request([Message("user", "q")]))
    with pytest.raises(LLMOptionError, match="tool_call_id"):
        build_request([{"role": "tool", "content": "x"}])
    with pytest.raises(LLMOptionError, match="need tools"):
        build_request([Message("user", "q")], tool_choice="auto")
    with pytest.raises(LLMOptionError, match="not both"):
        build_request([Message("user", "q")], tools=[SEARCH], grammar='root ::= "a"')


def test_the_local_model_refuses_tools_naming_the_modes_that_work(gguf_path, arun) -> None:
    llm = LocalLLM(str(gguf_path))
    with pytest.raises(LLMOptionError, match="no native tool calling.*compiler.*react"):
        llm.stream(QUESTION, tools=[SEARCH])


# ---------------------------------------------------------------- llama.cpp's server


@pytest.fixture(scope="module")
def llama_fc_server(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """llama-cpp-python's server with its "chatml-function-calling" chat format: the
    bundled SmolLM2 has a ChatML template (with no tools in it), and this format
    prompts a ChatML model with the tools and constrains its calls by grammar."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp.server") is None:
        pytest.skip("llama-cpp-python[server] is not installed (extra plait[test])")
    port = free_port()
    log = tmp_path_factory.mktemp("llama_fc") / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--host",
             "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "1234",
             "--chat_format", "chatml-function-calling", "--verbose", "False"],
            stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "llama_cpp.server was not ready within 90 s"
            time.sleep(0.2)
        yield base
    finally:
        end(proc)


def test_llama_cpp_server_answers_a_function_calling_request(llama_fc_server, arun) -> None:
    # Not streamed, and the call named: under "auto" this chat format streams at most
    # one call and lets the model write with no token bound (minutes on a small CPU).
    # The enum keeps the small model's arguments short: the grammar comes from the schema.
    pick = {"type": "function", "function": {
        "name": "search", "description": "Look a mountain up.",
        "parameters": {"type": "object", "required": ["entity"], "properties": {
            "entity": {"type": "string", "enum": ["K2", "Everest", "Denali"]}}}}}
    llm = OpenAILLM("smollm2", base_url=llama_fc_server, api_key="sk-none", stream=False,
                    read_timeout=120)

    async def body():
        try:
            return await llm.complete(
                [Message("user", "Look up the mountain K2.")], tools=[pick], max_tokens=60,
                temperature=0, tool_choice={"type": "function", "function": {"name": "search"}})
        finally:
            await llm.aclose()

    reply = arun(body(), timeout=240)
    assert [c.name for c in reply.tool_calls] == ["search"]
    assert json.loads(reply.tool_calls[0].arguments)["entity"] in ("K2", "Everest", "Denali")
    assert reply.tool_calls[0].id
