"""The OpenAI-compatible backend against a hostile server (tests/llm/hostile_server.py):
every bad shape ends in a retry or a clear `LLMError` naming the server, within a
bounded time; nothing is read unbounded; a cut reply is never a whole answer;
credentials in the base URL never show."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest
from typer.testing import CliRunner

import plait
from plait.llm import (
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOptionError,
    LLMProtocolError,
    LLMTimeout,
    LLMTruncated,
    Message,
    OpenAILLM,
    get_llm,
)
from plait.llm import _openai
from plait.llm._sse import Lines, TooLong, events

from .hostile_server import HostileServer

HI = [Message("user", "hi")]
SECRET = "s3cret-pass-77"
USERINFO = f"alice:{SECRET}@"
TOKEN = base64.b64encode(f"alice:{SECRET}".encode()).decode()


pytestmark = pytest.mark.usefixtures("no_env_credentials")


@pytest.fixture(scope="module")
def server(hostile: HostileServer) -> HostileServer:
    return hostile


def llm_for(server: HostileServer, shape: str, **options) -> OpenAILLM:
    options = {"max_retries": 2, "backoff_s": 0.01, "read_timeout": 2.0, **options}
    return OpenAILLM("m", base_url=server.url(shape), **options)


async def drain(llm: OpenAILLM) -> str:
    try:
        return "".join([d async for d in llm.stream(HI)])
    finally:
        await llm.aclose()


@plait.tool
def search(query: str) -> str:
    """Look a thing up."""
    return f"{query}: 8611 m"


# ---------------------------------------------------------------- every shape

# shape, the error, how many requests (retries), a piece of the server's data it shows
SHAPES = [
    ("json_list", LLMProtocolError, 1, "[1, 2, 3]"),
    ("string_delta", LLMProtocolError, 1, "hello"),
    ("numeric_content", LLMProtocolError, 1, "42"),
    ("choices_object", LLMProtocolError, 1, "choices"),
    ("usage_string", LLMProtocolError, 1, "lots"),
    ("usage_negative", LLMProtocolError, 1, "-1"),
    ("usage_missing", LLMProtocolError, 1, "completion_tokens"),
    ("not_json", LLMProtocolError, 1, "hello there"),
    ("error_event", LLMHTTPError, 3, "overloaded"),  # the server's trouble: retried
    ("error_data", LLMHTTPError, 1, "bad key"),  # a 4xx code: the caller's, not retried
    ("html_502", LLMHTTPError, 3, "502 Bad Gateway"),
    ("html_200", LLMProtocolError, 1, "Welcome"),
    ("json_body", LLMProtocolError, 1, "application/json"),
    ("cut_mid_line", LLMConnectionError, 1, "ended before"),  # a delta came: not retried
    ("huge_error", LLMHTTPError, 3, "boom boom"),
    ("huge_line", LLMProtocolError, 1, "longer than 1048576 bytes"),
    ("stall", LLMTimeout, 1, "read_timeout=0.5"),
]


@pytest.mark.parametrize(("shape", "error", "requests", "sample"), SHAPES,
                         ids=[s[0] for s in SHAPES])
def test_each_bad_shape_is_a_clear_llm_error(server, arun, shape, error, requests,
                                             sample) -> None:
    before = server.count(shape)
    llm = llm_for(server, shape, read_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(LLMError) as caught:
        arun(drain(llm), timeout=10)
    elapsed = time.monotonic() - start
    assert type(caught.value) is error, caught.value
    message = str(caught.value)
    assert f"{llm.base_url}/chat/completions" in message  # where
    assert sample in message  # what it sent
    assert server.count(shape) - before == requests
    assert elapsed < 3.0, f"{shape} took {elapsed:.2f} s"


def test_the_finish_reason_is_kept(server, arun) -> None:
    async def body(shape: str):
        llm = llm_for(server, shape)
        stream = llm.stream(HI, max_tokens=3)
        text = "".join([d async for d in stream])
        await llm.aclose()
        return text, stream.usage

    text, usage = arun(body("length"))
    assert text == "cut in the mid" and usage.finish_reason == "length" and usage.truncated
    assert usage.completion_tokens == 7  # the server's own count
    text, usage = arun(body("ok"))
    assert text == "fine" and usage.finish_reason == "stop" and not usage.truncated


def test_memory_stays_bounded_with_huge_bodies(server) -> None:
    """A 300 MB error body (three attempts) and a 200 MB stream line, in a fresh
    process: its peak RSS stays within 200 MB of its baseline."""
    script = textwrap.dedent(f"""
        import asyncio, json, resource, time
        from plait.llm import LLMError, Message, OpenAILLM

        async def call(shape):
            llm = OpenAILLM("m", base_url="{server.url('SHAPE')}".replace("SHAPE", shape),
                            max_retries=2, backoff_s=0.01, read_timeout=5)
            try:
                return "".join([d async for d in llm.stream([Message("user", "hi")])])
            except LLMError as e:
                return type(e).__name__
            finally:
                await llm.aclose()

        asyncio.run(call("ok"))  # everything imported and warmed up
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.monotonic()
        out = [asyncio.run(call(s)) for s in ("huge_error", "huge_line")]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"out": out, "grew_mb": (peak - base) / 1024,
                          "s": time.monotonic() - start}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["out"] == ["LLMHTTPError", "LLMProtocolError"]
    assert result["grew_mb"] < 200, result
    assert result["s"] < 8, result


# ---------------------------------------------------------------- through ask


def test_a_cut_joiner_reply_is_asked_again_then_an_error(server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url("ask_cut"))
    before = len(server.requests)
    start = time.monotonic()
    with pytest.raises(LLMTruncated) as caught:
        plait.ask("How high is K2?", [search], model="openai:m", timeout=20)
    assert time.monotonic() - start < 10
    joiner = [r.max_tokens for r in server.requests[before:] if r.joiner]
    # One bounded repair with twice the tokens (200, plus room for a plan it may write).
    assert len(joiner) == 2 and joiner[0] > 200 and joiner[1] == 2 * joiner[0]
    assert f"max_tokens={joiner[1]}" in str(caught.value)
    assert "Eight thousand" in str(caught.value)


def test_a_repaired_cut_is_recorded_journaled_and_replayed(server, monkeypatch,
                                                             tmp_path) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url("ask_cut_once"))
    journal = tmp_path / "runs.db"
    answer = plait.ask("How high is K2?", [search], model="openai:m", timeout=20,
                       journal=str(journal), run_id="k2")
    assert answer.text == "8611 m" and not answer.truncated
    assert [c.finish_reason for c in answer.llm_calls] == ["stop", "length", "stop"]
    assert [c.truncated for c in answer.llm_calls] == [False, True, False]
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b'"finish_reason":"length"' in stored
    again = plait.ask("How high is K2?", [search], model="openai:m", timeout=20,
                      journal=str(journal), run_id="k2")
    assert all(c.replayed for c in again.llm_calls)
    assert [c.finish_reason for c in again.llm_calls] == ["stop", "length", "stop"]


def test_a_cut_last_react_step_is_an_error(server, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url("react_cut"))
    with pytest.raises(LLMTruncated) as caught:
        plait.ask("How high is K2?", [search], model="openai:m", mode="react", max_steps=1,
                  timeout=20)
    assert "I will think" in str(caught.value)


def test_an_endless_stream_ends_on_the_calls_own_timeout(server) -> None:
    llm = llm_for(server, "endless")
    start = time.monotonic()
    with pytest.raises(LLMTimeout) as caught:
        plait.ask("q", [search], model=llm, llm_timeout=0.5, timeout=20)
    assert time.monotonic() - start < 3
    message = str(caught.value)
    assert "llm_timeout of 0.5 s" in message and server.url("endless") in message


# ---------------------------------------------------------------- credentials


def test_url_credentials_are_sent_never_shown(server, arun, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # httpx logs every request's URL
    llm = OpenAILLM("m", base_url=server.url("echo_401", USERINFO), max_retries=0)
    shown = repr(llm) + llm.spec + llm.base_url + repr(vars(llm))
    assert SECRET not in shown and TOKEN not in shown and "alice" not in shown
    with pytest.raises(LLMHTTPError) as caught:
        arun(drain(llm), timeout=10)
    assert server.requests[-1].headers["authorization"] == f"Basic {TOKEN}"
    message = str(caught.value)
    assert "bad auth" in message and SECRET not in message and TOKEN not in message
    assert "HTTP Request" in caplog.text and SECRET not in caplog.text
    with pytest.raises(LLMOptionError) as bad:  # a '/' in a password splits the URL wrongly
        OpenAILLM("m", base_url=f"http://alice:{SECRET}/x@127.0.0.1:9/v1")
    assert SECRET not in str(bad.value) and "percent-encoded" in str(bad.value)


def test_url_credentials_stay_out_of_the_journal_and_the_cli(server, monkeypatch,
                                                             tmp_path) -> None:
    from plait.cli._app import app

    monkeypatch.setenv("OPENAI_BASE_URL", server.url("echo_401", USERINFO))
    journal = tmp_path / "runs.db"
    with pytest.raises(LLMHTTPError):
        plait.ask("q", [search], model="openai:m", journal=str(journal), run_id="leak")
    runner = CliRunner()
    asked = runner.invoke(app, ["ask", "q", "--model", "openai:m", "--journal", str(journal),
                                "--run-id", "leak2"])
    assert asked.exit_code != 0 and "bad auth" in asked.output, asked.output
    listed = runner.invoke(app, ["runs", "--journal", str(journal)])
    assert "leak2" in listed.output, listed.output
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"bad auth" in stored  # the error is journaled...
    for text in (stored, asked.output.encode(), listed.output.encode()):
        assert SECRET.encode() not in text and TOKEN.encode() not in text  # ...never the secret


# ---------------------------------------------------------------- one client per server


def test_one_client_per_server_and_loop(server) -> None:
    async def body() -> tuple[object, bool]:
        a, b = llm_for(server, "ok"), llm_for(server, "ok")
        assert await drain_open(a) == await drain_open(b) == "fine"
        client = a._client()
        assert b._client() is client  # shared by every OpenAILLM of the server
        other = llm_for(server, "length")
        assert other._client() is not client  # another server
        await other.aclose()
        await a.aclose()
        assert not client.is_closed  # b still uses it
        await b.aclose()
        return client, client.is_closed

    first, closed = asyncio.run(body())
    assert closed  # the last user closed it
    leaked = llm_for(server, "ok")
    asyncio.run(drain_open(leaked))  # never closed: its loop is gone
    stale = [k for k, e in _openai._CLIENTS.items() if e.loop.is_closed()]
    assert stale
    second, _ = asyncio.run(body())
    assert second is not first  # a client is bound to its loop
    assert not [k for k, e in _openai._CLIENTS.items() if e.loop.is_closed()]  # swept


async def drain_open(llm: OpenAILLM) -> str:
    return "".join([d async for d in llm.stream(HI)])


def test_get_llm_is_cheap() -> None:
    start = time.perf_counter()
    for _ in range(200):
        get_llm("openai:m", base_url="http://127.0.0.1:9/v1")
    assert (time.perf_counter() - start) / 200 < 0.002


# ---------------------------------------------------------------- the SSE reader


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_sse_lines_split_anywhere_and_stay_bounded() -> None:
    def collect(*parts: bytes) -> list[bytes]:
        splitter = Lines(64)
        return [line for part in parts for line in splitter.feed(part)]

    assert collect(b"a\r", b"\nb\rc\n", b"d\n") == [b"a", b"b", b"c", b"d"]
    assert collect(b"ab", b"c\r\n\r\n") == [b"abc", b""]
    with pytest.raises(TooLong):
        collect(b"x" * 40, b"x" * 40)  # no line end yet, but already too long
    with pytest.raises(TooLong):
        collect(b"x" * 100 + b"\n")

    async def evs(*parts: bytes):
        return [e async for e in events(chunks(*parts), max_line=64, max_event=64)]

    got = asyncio.run(evs(b": hi\nevent: error\ndata: a\ndata:b\n\ndata: cut"))
    assert [(e.event, e.data) for e in got] == [("error", "a\nb")]  # a cut event is dropped
    with pytest.raises(TooLong):
        asyncio.run(evs(b"data: " + b"x" * 40 + b"\n" + b"data: " + b"x" * 40 + b"\n\n"))
