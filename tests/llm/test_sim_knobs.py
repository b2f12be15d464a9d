"""The simulated model's knobs for reasoning and speculation figures.

- `pps` (prefill tokens/s) with a prefix cache: a call pays prefill only for the
  prompt tokens (messages + prefill) no earlier call has read, and a prompt
  followed by the reply written after it is read too, so a thread continuing a
  parent's text pays only its own header. Asserted on the sim's own accounting
  (`stats.prefill_tokens` / `cached_tokens`), and on time only as lower bounds.
- `contention` c: n calls decoding at once each get a per-token interval x
  (1 + c (n - 1)), on one shared clock.
- all knobs off: the timing is exactly as before (the other sim tests hold it).
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from plait.llm import LLMOptionError, Message, OpenAILLM, SimLLM, get_llm
from plait.llm._capacity import Capacity, _SharedRate
from plait.llm._prefix import PrefixCache, common_prefix
from plait.llm._protocol import approx_tokens, build_request
from plait.llm._sim import count_tokens, prompt_read, prompt_tokens
from plait.llm._tokens import BPE, WORD

Q = [Message("system", "Think in parallel."), Message("user", "What is 2+3 and 4+5?")]
PARENT = "Two sums.\n<Parallel>\n<Outlines>1: 2+3 2: 4+5</Outlines>"
SCRIPT = [
    {"prefill": r"1:$", "reply": " 2+3 is 5.\n</Thread>"},
    {"prefill": r"2:$", "reply": " 4+5 is 9.\n</Thread>"},
    {"reply": PARENT},
]


def test_common_prefix_and_the_cache() -> None:
    assert common_prefix("abcdef", "abcxyz") == 3
    assert common_prefix("abc", "abcdef") == 3 and common_prefix("", "abc") == 0
    assert common_prefix("x" * 1000 + "a", "x" * 1000 + "b") == 1000
    cache = PrefixCache(entries=2)
    cache.add("hello world", at=1.0)
    assert cache.match("hello world, again", now=0.5) == 0  # not read yet
    assert cache.match("hello world, again", now=1.0) == 11
    assert cache.match("help", now=1.0) == 3
    cache.add("zebra", at=1.0)
    cache.add("quartz", at=1.0)  # a third entry: the least recently used goes
    assert cache.match("hello", now=2.0) == 0
    assert cache.match("zebra crossing", now=2.0) == 5 and len(cache) == 2


def test_prompt_read_counts_what_prompt_tokens_counts() -> None:
    from plait.llm import ToolCall

    request = build_request(
        [Message("system", "s p"), Message("user", "a question here"),
         Message("assistant", "", (ToolCall("c1", "search", '{"q": "x y"}'),)),
         Message("tool", "a result", (), "c1")],
        tools=[{"name": "search", "parameters": {}}])
    text, segments = prompt_read(request)
    assert text == "".join(seg for seg, _ in segments)
    for tokens in (WORD, BPE):
        assert sum(tokens.count(seg) if n is None else n for seg, n in segments) == \
            prompt_tokens(request, tokens)
    with_prefix = prompt_read(build_request([Message("user", "q")], prefill="go on"))[0]
    assert with_prefix.startswith(prompt_read(build_request([Message("user", "q")]))[0])


def test_a_thread_pays_only_its_header(arun) -> None:
    # pps 50: a thread's 2-token prefill takes 40 ms, so the other thread, started
    # in the same turn of the loop, cannot find its header cached yet.
    llm = SimLLM(SCRIPT, ttft=0.0, tps=10_000, pps=50)

    async def go():
        parent = await llm.complete(Q)
        after_parent = llm.stats
        threads = await asyncio.gather(*(llm.complete(Q, prefill=f"{parent.text}\n<Thread>\n{k}:")
                                         for k in (1, 2)))
        return parent, after_parent, threads, llm.stats

    parent, s1, threads, s2 = arun(go())
    assert parent.text == PARENT
    assert s1.prefill_tokens == parent.usage.prompt_tokens and s1.cached_tokens == 0
    assert [t.text for t in threads] == [" 2+3 is 5.\n</Thread>", " 4+5 is 9.\n</Thread>"]
    # Each thread read the question and the parent's reply from the cache: it paid
    # for its header only ("\n<Thread>" and "\nk:": two word tokens).
    assert s2.prefill_tokens - s1.prefill_tokens == 2 * 2
    assert s2.cached_tokens == 2 * (parent.usage.prompt_tokens + count_tokens(PARENT))
    assert all(t.usage.prompt_tokens == parent.usage.prompt_tokens + count_tokens(PARENT) + 2
               for t in threads)


def test_prefill_time_is_paid_for_uncached_tokens_only(arun) -> None:
    """pps=200: the parent's ~14-token prompt costs >= 70 ms of prefill; a thread's
    2 new tokens 10 ms. Lower bounds on time, and the accounting exact."""
    llm = SimLLM(SCRIPT, ttft=0.01, tps=1000, pps=200)

    async def go():
        parent = await llm.complete(Q)
        thread = await llm.complete(Q, prefill=f"{parent.text}\n<Thread>\n1:")
        return parent, thread

    parent, thread = arun(go())
    assert parent.usage.ttft_s >= 0.01 + parent.usage.prompt_tokens / 200 - 0.002
    assert thread.usage.ttft_s >= 0.01 + 2 / 200 - 0.002
    assert thread.usage.ttft_s < parent.usage.ttft_s
    assert llm.stats.prefill_tokens == parent.usage.prompt_tokens + 2


def test_a_cut_stream_caches_only_what_was_sent(arun) -> None:
    llm = SimLLM([PARENT, {"reply": "ok"}], ttft=0.0, tps=10_000, pps=1e6)

    async def go():
        stream = llm.stream(Q)
        got = []
        async for delta in stream:  # stop after two tokens, as a fork parser would
            got.append(delta)
            if len(got) == 2:
                break
        await stream.aclose()
        before = llm.stats.prefill_tokens
        await llm.complete(Q, prefill=PARENT)
        return "".join(got), llm.stats.prefill_tokens - before

    sent, paid = arun(go())
    assert sent == "Two sums."
    # The cache held the prompt and the 2 sent tokens: the rest of PARENT is paid.
    assert paid == count_tokens(PARENT) - 2


def test_prefix_cache_over_http(sim_server, arun) -> None:
    server = sim_server(SCRIPT, ttft=0.0, tps=10_000, pps=1e6, tokens="bpe")
    llm = OpenAILLM("sim", base_url=server.base_url, api_key="sk-none")

    async def go():
        try:
            parent = await llm.complete(Q)
            thread = await llm.complete(Q, prefill=parent.text + "\n<Thread>\n1:")
            return parent, thread
        finally:
            await llm.aclose()

    parent, thread = arun(go())
    paid = server.stats.prefill_tokens - parent.usage.prompt_tokens
    # bpe: the parent's reply is cached whole; the header's 4-character pieces
    # that straddle or follow the end of the reply are paid.
    tail = (len(PARENT) % 4 + len("\n<Thread>\n1:"))
    assert paid == math.ceil(tail / 4) and paid < 5
    assert thread.usage.prompt_tokens == approx_tokens(Q[0].content) + approx_tokens(
        Q[1].content) + approx_tokens(PARENT + "\n<Thread>\n1:")


def test_contention_rate() -> None:
    loop = asyncio.new_event_loop()
    try:
        for c, n, expect in [(0.0, 4, 60.0), (1.0, 2, 30.0), (1.0, 4, 15.0),
                             (0.1, 3, 60 / 1.2)]:
            rate = _SharedRate(60.0, None, loop, c)
            rate.n = n
            assert rate.rate() == pytest.approx(expect)
        both = _SharedRate(60.0, 100.0, loop, 0.1)  # with capacity: the smaller
        both.n = 4
        assert both.rate() == pytest.approx(min(60 / 1.3, 25.0))
    finally:
        loop.close()
    assert Capacity(tps=60, contention=1.0).calls_per_s(61) == pytest.approx(1.0)


def test_two_streams_with_contention_one_take_twice_as_long(arun) -> None:
    """c = 1: one decoder shared by every stream. Two streams of 31 tokens at 100
    tokens/s each take >= 2 x 0.3 s (lower bound: never flaky); alone, 0.3 s."""
    reply = " ".join(["tok"] * 31)
    llm = SimLLM(reply, ttft=0.0, tps=100, contention=1.0)

    async def one() -> float:
        t0 = time.monotonic()
        await llm.complete([Message("user", "go")])
        return time.monotonic() - t0

    async def two() -> list[float]:
        return await asyncio.gather(one(), one())

    alone = arun(one())
    pair = arun(two())
    assert alone >= 0.3 - 0.002
    assert min(pair) >= 2 * 0.3 * 0.98
    assert min(pair) > 1.5 * alone  # also relative to this machine's own pace now
    free = SimLLM(reply, ttft=0.0, tps=100)  # c = 0 (default): no slowdown at all

    async def free_two() -> list[float]:
        async def timed() -> float:
            t0 = time.monotonic()
            await free.complete([Message("user", "go")])
            return time.monotonic() - t0
        return await asyncio.gather(timed(), timed())

    assert max(arun(free_two())) < 2 * 0.3 * 0.98 + 0.3  # generous: load may slow it


def test_knobs_off_keep_the_old_path() -> None:
    cap = Capacity(ttft=0.4, tps=60)
    assert cap.prefix is None and cap.pps is None and cap.contention == 0.0
    assert not cap._shares
    assert cap.options()["tokens"] == "word"


def test_options_in_spec_and_checks() -> None:
    llm = get_llm("sim:pps=4000,contention=0.5,tokens=bpe")
    assert (llm.capacity.pps, llm.capacity.contention, llm.capacity.tokens) == (4000.0, 0.5, BPE)
    assert llm.spec == "sim:pps=4000,contention=0.5,tokens=bpe"
    for bad in ("sim:pps=0", "sim:pps=-1", "sim:contention=-0.1", "sim:pps=inf"):
        with pytest.raises(LLMOptionError):
            get_llm(bad)
