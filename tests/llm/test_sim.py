"""The simulated backend in-process: scripts, stop/max_tokens, faults, timing."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time

import pytest

from plait.llm import (
    Completion,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMOptionError,
    Message,
    SimLLM,
    get_llm,
)
from plait.llm._sim import DEFAULT_REPLY, count_tokens, split_tokens

FAST = {"ttft": 0.0, "tps": 10_000.0}
HI = [Message("user", "hi")]


def test_token_definition() -> None:
    assert split_tokens("  hi there \n") == ["  hi", " there", " \n"]
    assert "".join(split_tokens("a  b\tc ")) == "a  b\tc "
    assert count_tokens("") == 0 and count_tokens("one two three") == 3


def test_queue_then_exhausted(arun) -> None:
    llm = SimLLM(["first reply", "second"], **FAST)
    assert arun(llm.complete(HI)).text == "first reply"
    assert arun(llm.complete(HI)).text == "second"
    with pytest.raises(LLMError, match="no reply left"):
        arun(llm.complete(HI))


def test_rules_match_the_last_user_message_and_count_uses(arun) -> None:
    llm = SimLLM([
        {"match": r"^plan", "reply": "1. search($q)", "times": 1},
        {"match": r"weather", "reply": "sunny"},
        {"reply": "fallback"},
    ], **FAST)
    msgs = [Message("system", "weather plan"), Message("user", "plan the weather")]
    assert arun(llm.complete(msgs)).text == "1. search($q)"
    assert arun(llm.complete(msgs)).text == "sunny"  # the first rule is used up
    assert arun(llm.complete([Message("user", "other")])).text == "fallback"


def test_rules_match_the_role_of_the_call(arun) -> None:
    llm = SimLLM([
        {"role": "planner", "reply": "1. join()"},
        {"role": "joiner", "match": "K2", "reply": "K2"},
        {"role": "joiner", "reply": "Everest"},
    ], **FAST)
    asked = [Message("user", "Which is taller, Everest or K2?")]
    assert arun(llm.complete(asked, role="planner")).text == "1. join()"
    assert arun(llm.complete(asked, role="joiner")).text == "K2"
    assert arun(llm.complete([Message("user", "?")], role="joiner")).text == "Everest"
    with pytest.raises(LLMError, match="no reply left .* of a react call"):
        arun(llm.complete(asked, role="react"))
    with pytest.raises(LLMError, match="no reply left"):  # no role: no role rule matches
        arun(llm.complete(asked))


def test_a_script_function_may_take_the_role(arun) -> None:
    llm = SimLLM(lambda messages, role: f"{role}: {messages[-1].content}", **FAST)
    assert arun(llm.complete(HI, role="joiner")).text == "joiner: hi"
    assert arun(llm.complete(HI)).text == "None: hi"


def test_function_script_and_default_reply(arun, tmp_path) -> None:
    echo = SimLLM(lambda messages: messages[-1].content.upper(), **FAST)
    assert arun(echo.complete([Message("user", "shout")])).text == "SHOUT"
    assert arun(SimLLM(**FAST).complete(HI)).text == DEFAULT_REPLY
    path = tmp_path / "replies.json"
    path.write_text(json.dumps([{"match": "x", "reply": "from file"}]))
    llm = get_llm(f"sim:script={path},ttft=0,tps=1000")
    assert arun(llm.complete([Message("user", "x")])).text == "from file"


def test_bad_scripts_are_rejected() -> None:
    for bad in ([{"reply": "x", "when": 1}], [{"match": "(", "reply": "x"}],
                [{"reply": "x", "fault": {"status": 500, "hang": True}}], 42):
        with pytest.raises(LLMOptionError):
            SimLLM(bad)


def test_stop_and_max_tokens_cut_like_a_server(arun) -> None:
    llm = SimLLM("alpha beta STOP gamma delta", **FAST)
    c = arun(llm.complete(HI, stop=["STOP", "delta"]))
    assert c.text == "alpha beta "  # the stop string itself is not returned
    assert c.usage.completion_tokens == 3  # "alpha", " beta", " "
    c = arun(llm.complete(HI, max_tokens=2))
    assert c.text == "alpha beta" and c.usage.completion_tokens == 2
    assert c.usage.prompt_tokens == 1


def test_usage_only_after_exhaustion_and_streams_iterate_once(arun) -> None:
    llm = SimLLM("a b c d", **FAST)

    async def body() -> None:
        stream = llm.stream(HI)
        assert stream.usage is None
        deltas = [d async for d in stream]
        assert deltas == ["a", " b", " c", " d"]
        assert stream.usage is not None and stream.usage.completion_tokens == 4
        with pytest.raises(RuntimeError):
            stream.__aiter__()
        early = llm.stream(HI)
        async for _ in early:
            break
        await early.aclose()
        assert early.usage is None

    arun(body())


def test_options_are_validated(arun) -> None:
    llm = SimLLM(**FAST)
    with pytest.raises(LLMOptionError, match="not both"):
        llm.stream(HI, grammar='root ::= "a"', json_schema={"type": "object"})
    with pytest.raises(LLMOptionError):
        llm.stream([])
    with pytest.raises(LLMOptionError, match="role"):
        llm.stream([Message("robot", "x")])
    with pytest.raises(LLMOptionError):
        llm.stream(HI, max_tokens=0)
    # plain dicts are accepted as messages
    assert isinstance(arun(llm.complete([{"role": "user", "content": "x"}])), Completion)


def test_faults_in_process(arun) -> None:
    llm = SimLLM([
        {"match": "429", "reply": "", "fault": {"status": 429, "retry_after": 3}},
        {"match": "drop", "reply": "one two three four", "fault": {"drop_after": 2}},
        {"match": "hang", "reply": "x", "fault": {"hang": True}},
        {"match": "stall", "reply": "one two three", "fault": {"stall_after": 1}},
    ], **FAST)
    with pytest.raises(LLMHTTPError) as info:
        arun(llm.complete([Message("user", "429")]))
    assert info.value.status == 429 and info.value.retry_after == 3 and info.value.retryable

    async def drop() -> list[str]:
        got: list[str] = []
        with pytest.raises(LLMConnectionError):
            async for d in llm.stream([Message("user", "drop")]):
                got.append(d)
        return got

    assert arun(drop()) == ["one", " two"]
    for word in ("hang", "stall"):
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            arun(llm.complete([Message("user", word)]), timeout=0.3)
        assert time.monotonic() - start < 2


async def _hog(stop: asyncio.Event) -> None:
    """Load: block the event loop for 0-12 ms at a time, most of the time.
    Irregular, so no token schedule can fall into step with it."""
    rng = random.Random(7)
    while not stop.is_set():
        time.sleep(rng.uniform(0, 0.012))  # noqa: ASYNC251 -- the point: a blocked loop
        await asyncio.sleep(rng.uniform(0, 0.004))


def test_timing_within_ten_percent_under_load(arun) -> None:
    ttft, tps, n = 0.3, 50.0, 31
    llm = SimLLM(" ".join(["word"] * n), ttft=ttft, tps=tps)

    async def body() -> list:
        stop = asyncio.Event()
        hog = asyncio.create_task(_hog(stop))
        streams = [llm.stream(HI) for _ in range(40)]

        async def drain(s) -> None:
            async for _ in s:
                pass

        await asyncio.gather(*(drain(s) for s in streams))
        stop.set()
        await hog
        return [s.usage for s in streams]

    usages = arun(body())
    ttfts = [u.ttft_s for u in usages]
    rates = [(u.completion_tokens - 1) / (u.total_s - u.ttft_s) for u in usages]
    assert all(u.completion_tokens == n for u in usages)
    assert statistics.median(ttfts) == pytest.approx(ttft, rel=0.10)
    assert statistics.median(rates) == pytest.approx(tps, rel=0.10)
    assert max(ttfts) < ttft * 1.25 and min(rates) > tps * 0.8
