"""The OpenAI-compatible backend against the simulated HTTP server: the wire
format, retries, faults and timeouts. Every fault ends in a retry or a clear
error within a bounded time."""

from __future__ import annotations

import json
import logging
import statistics
import time

import httpx
import pytest

from plait.llm import (
    LLMConnectionError,
    LLMHTTPError,
    LLMOptionError,
    LLMTimeout,
    Message,
    OpenAILLM,
)
from plait.llm._openai import DIALECTS, parse_retry_after
from plait.llm._protocol import build_request
from tests._support import free_port

HI = [Message("user", "hi")]
KEY = "sk-test-do-not-leak-42"


def client(server, **options) -> OpenAILLM:
    options = {"api_key": KEY, "backoff_s": 0.05, "read_timeout": 5.0, **options}
    return OpenAILLM("sim", base_url=server.base_url, **options)


def test_wire_format_stream_and_plain(sim_server) -> None:
    server = sim_server(["hello simulated world", "plain answer"], ttft=0.0, tps=1000)
    base = server.base_url
    assert httpx.get(f"{base}/models").json()["data"][0]["id"] == "sim"
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=5) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "hello simulated world"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 3,
                                   "total_tokens": 4}
    plain = httpx.post(f"{base}/chat/completions", json={**body, "stream": False}, timeout=5)
    assert plain.json()["choices"][0]["message"]["content"] == "plain answer"
    assert httpx.post(f"{base}/chat/completions", content=b"nonsense", timeout=5).status_code == 400


def test_stream_complete_and_server_usage(sim_server, arun) -> None:
    server = sim_server([{"reply": "one two three four five"}], ttft=0.05, tps=200)
    llm = client(server)

    async def body():
        stream = llm.stream(HI, max_tokens=3)
        deltas = [d async for d in stream]
        c = await llm.complete(HI, stop=["four"])
        await llm.aclose()
        return deltas, stream.usage, c

    deltas, usage, c = arun(body())
    assert deltas == ["one", " two", " three"]
    assert usage.completion_tokens == 3 and usage.prompt_tokens == 1  # the server's counts
    assert usage.ttft_s >= 0.05
    assert c.text == "one two three "


def test_429_honours_retry_after_then_succeeds(sim_server, arun) -> None:
    server = sim_server([
        {"reply": "", "times": 1, "fault": {"status": 429, "retry_after": 0.6}},
        {"reply": "after the wait"}], ttft=0.0, tps=1000)
    start = time.monotonic()
    c = arun(client(server).complete(HI))
    elapsed = time.monotonic() - start
    assert c.text == "after the wait"
    assert 0.6 <= elapsed < 3.0


def test_429_until_retries_run_out(sim_server, arun) -> None:
    server = sim_server([{"reply": "", "fault": {"status": 429, "retry_after": 0.1}}])
    start = time.monotonic()
    with pytest.raises(LLMHTTPError) as info:
        arun(client(server, max_retries=2).complete(HI))
    assert info.value.status == 429 and info.value.retryable and info.value.retry_after == 0.1
    assert 0.2 <= time.monotonic() - start < 3.0  # two waits of 0.1 s, then the error


def test_retry_after_beyond_the_cap_is_not_waited_for(sim_server, arun) -> None:
    server = sim_server([{"reply": "", "fault": {"status": 503, "retry_after": 3600}}])
    start = time.monotonic()
    with pytest.raises(LLMHTTPError) as info:
        arun(client(server, max_backoff_s=5).complete(HI))
    assert info.value.status == 503 and info.value.retry_after == 3600
    assert time.monotonic() - start < 2.0


def test_500_is_retried_with_backoff(sim_server, arun) -> None:
    server = sim_server([
        {"reply": "", "times": 2, "fault": {"status": 500}}, {"reply": "third time lucky"}],
        ttft=0.0, tps=1000)
    start = time.monotonic()
    assert arun(client(server).complete(HI)).text == "third time lucky"
    # backoff 0.05 * 2**k, jittered in [50%, 100%]: 0.025+0.05 <= waits <= 0.05+0.1
    assert 0.07 <= time.monotonic() - start < 2.0


def test_500_forever_is_a_clear_error(sim_server, arun) -> None:
    server = sim_server([{"reply": "", "fault": {"status": 500}}])
    start = time.monotonic()
    with pytest.raises(LLMHTTPError, match="HTTP 500") as info:
        arun(client(server, max_retries=3).complete(HI))
    assert info.value.retryable
    assert time.monotonic() - start < 3.0


def test_4xx_is_not_retried(sim_server, arun) -> None:
    server = sim_server([{"reply": "", "times": 1, "fault": {"status": 400}}, "never reached"])
    with pytest.raises(LLMHTTPError) as info:
        arun(client(server).complete(HI))
    assert info.value.status == 400 and not info.value.retryable


def test_drop_mid_stream_is_an_error_not_a_truncated_answer(sim_server, arun) -> None:
    server = sim_server([{"reply": "a b c d e f", "fault": {"drop_after": 3}}],
                        ttft=0.0, tps=500)
    llm = client(server)

    async def body() -> list[str]:
        got: list[str] = []
        with pytest.raises(LLMConnectionError) as info:
            async for d in llm.stream(HI):
                got.append(d)
        assert info.value.retryable
        return got

    start = time.monotonic()
    assert arun(body()) == ["a", " b", " c"]
    with pytest.raises(LLMConnectionError):
        arun(llm.complete(HI))  # complete() never returns the partial text
    assert time.monotonic() - start < 3.0


def test_drop_before_the_first_token_is_retried(sim_server, arun) -> None:
    server = sim_server([{"reply": "lost", "times": 1, "fault": {"drop_after": 0}},
                         "the retry"], ttft=0.0, tps=1000)
    assert arun(client(server).complete(HI)).text == "the retry"


def test_server_that_never_answers_times_out(sim_server, arun) -> None:
    server = sim_server([{"reply": "x", "fault": {"hang": True}}])
    start = time.monotonic()
    with pytest.raises(LLMTimeout):
        arun(client(server, read_timeout=0.5).complete(HI))
    assert 0.5 <= time.monotonic() - start < 2.5  # one read timeout, not retried


def test_stall_between_chunks_times_out(sim_server, arun) -> None:
    server = sim_server([{"reply": "a b c", "fault": {"stall_after": 1}}], ttft=0.0, tps=1000)
    start = time.monotonic()
    with pytest.raises(LLMTimeout):
        arun(client(server, read_timeout=0.5).complete(HI))
    assert 0.5 <= time.monotonic() - start < 2.5


def test_connection_refused_is_retried_then_reported(arun) -> None:
    llm = OpenAILLM("m", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key=KEY,
                    max_retries=2, backoff_s=0.05, connect_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(LLMConnectionError, match="cannot connect") as info:
        arun(llm.complete(HI))
    assert KEY not in str(info.value)
    assert time.monotonic() - start < 3.0


def test_key_never_in_errors_or_logs(sim_server, arun, caplog) -> None:
    server = sim_server([{"reply": "", "fault": {"status": 500}}])
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LLMHTTPError) as info:
        arun(client(server, max_retries=1).complete(HI))
    text = str(info.value) + repr(info.value) + repr(info.value.__cause__)
    assert KEY not in text
    assert KEY not in caplog.text
    assert "127.0.0.1" in caplog.text  # httpx did log the requests


def test_http_sim_timing_within_ten_percent(sim_server, arun) -> None:
    # Client and server share this process (and the machine may be busy):
    # bounds are generous; benchmarks/llm_sim.py prints the exact figures.
    ttft, tps, n = 0.5, 40.0, 21
    server = sim_server(" ".join(["tok"] * n), ttft=ttft, tps=tps)
    llm = client(server)

    async def body() -> list:
        import asyncio

        streams = [llm.stream(HI) for _ in range(4)]

        async def drain(s) -> None:
            async for _ in s:
                pass

        await asyncio.gather(*(drain(s) for s in streams))
        await llm.aclose()
        return [s.usage for s in streams]

    usages = arun(body())
    assert all(u.completion_tokens == n for u in usages)
    assert statistics.median(u.ttft_s for u in usages) == pytest.approx(ttft, rel=0.15)
    rates = [(u.completion_tokens - 1) / (u.total_s - u.ttft_s) for u in usages]
    assert statistics.median(rates) == pytest.approx(tps, rel=0.15)


def test_dialect_table_maps_grammar_and_schema() -> None:
    schema = {"type": "object"}
    grammar = 'root ::= "yes" | "no"'
    req_g = build_request(HI, grammar=grammar)
    req_s = build_request(HI, json_schema=schema)
    expected = {"llama.cpp": "grammar", "vllm": "guided_grammar", "sglang": "ebnf"}
    for name, field in expected.items():
        llm = OpenAILLM("m", base_url="http://127.0.0.1:1/v1", dialect=name)
        body = llm.body(req_g)
        assert body[field] == grammar and body["stream_options"] == {"include_usage": True}
    assert OpenAILLM("m", base_url="http://h/v1", dialect="vllm").body(req_s)["guided_json"] \
        == schema
    rf = OpenAILLM("m", base_url="http://h/v1", dialect="llama.cpp").body(req_s)["response_format"]
    assert rf == {"type": "json_object", "schema": schema}
    openai = OpenAILLM("m", base_url="http://h/v1", dialect="openai")
    assert openai.body(req_s)["response_format"]["json_schema"]["schema"] == schema
    with pytest.raises(LLMOptionError, match="grammar"):
        openai.stream(HI, grammar=grammar)
    with pytest.raises(LLMOptionError, match="dialect"):
        OpenAILLM("m", base_url="http://h/v1", dialect="nope")
    assert set(DIALECTS) == {"openai", "llama.cpp", "vllm", "sglang"}


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 < parse_retry_after(in_a_minute) <= 61  # type: ignore[operator]
