"""The simulated model's capacity (slots, a shared token rate, drawn lengths, a
rate limit, counters), in-process and over HTTP: the same model, checked
against the timing it promises."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time

import httpx
import pytest

from plait.llm import LLMHTTPError, LLMOptionError, Message, OpenAILLM, SimLLM, get_llm
from plait.llm._capacity import Capacity, Lengths, parse_rate
from plait.llm._sim import count_tokens
from plait.llm._spec import parse_openai, parse_sim_options
from tests._support import free_port

HI = [Message("user", "hi")]


def words(n: int) -> str:
    return " ".join(["w"] * n)


async def timed_calls(llm, n: int, **options) -> tuple[float, list]:
    """n calls at once; (wall time, their usages)."""
    start = time.monotonic()
    done = await asyncio.gather(*(llm.complete(HI, **options) for _ in range(n)))
    return time.monotonic() - start, [c.usage for c in done]


def test_slots_queue_calls_in_order_and_queue_time_counts_in_ttft(arun) -> None:
    # Each call holds a slot for ttft + 10/tps = 0.1 s; six over two slots: three waves.
    llm = SimLLM(words(11), ttft=0.05, tps=200, slots=2)
    wall, usages = arun(timed_calls(llm, 6))
    assert 0.29 <= wall < 0.45
    ttfts = sorted(u.ttft_s for u in usages)
    for got, want in zip(ttfts, [0.05, 0.05, 0.15, 0.15, 0.25, 0.25], strict=True):
        assert want - 0.005 <= got < want + 0.06
    stats = llm.stats
    assert (stats.received, stats.served, stats.in_flight, stats.queued) == (6, 6, 0, 0)
    assert stats.max_in_flight == 6 and stats.completion_tokens == 66


def test_the_token_rate_is_shared_by_the_calls_decoding(arun) -> None:
    # Alone, a call goes at min(tps, capacity) = 400 tokens/s: 20 tokens in 0.05 s.
    llm = SimLLM(words(21), ttft=0.02, tps=1000, capacity=400)
    _, (alone,) = arun(timed_calls(llm, 1))
    assert 0.04 <= alone.total_s - alone.ttft_s < 0.15  # 0.2 if it were cut by 4
    # Four at once get 100 tokens/s each: 0.2 s.
    _, four = arun(timed_calls(llm, 4))
    for u in four:
        assert 0.19 <= u.total_s - u.ttft_s < 0.32


def test_a_finished_call_gives_its_share_back(arun) -> None:
    # Two calls at 100 tokens/s each; the short one (10 tokens) ends at 0.1 s, then
    # the long one goes at min(tps, capacity) = 200 tokens/s for its last 30: 0.25 s.
    llm = SimLLM([words(11), words(41)], ttft=0.0, tps=1000, capacity=200)

    async def body():
        return await asyncio.gather(llm.complete(HI), llm.complete(HI))

    short, long = arun(body())
    assert short.usage.completion_tokens == 11 and long.usage.completion_tokens == 41
    assert 0.09 <= short.usage.total_s < 0.16
    assert 0.24 <= long.usage.total_s < 0.34  # 0.4 s if the share were not given back


def test_a_saturating_client_reaches_the_slot_ceiling_over_http(sim_server, arun) -> None:
    # Ceiling: 8 slots / (ttft + 10/tps) = 8 / 0.2 s = 40 calls/s.
    server = sim_server(None, ttft=0.1, tps=100, slots=8, lengths="fixed:11")
    assert server.ceiling() == pytest.approx(40)
    assert server.ceiling(calls_per_row=2) == pytest.approx(20)
    llm = OpenAILLM("sim", base_url=server.base_url, max_concurrency=16, stream=False)

    async def body() -> float:
        await llm.complete(HI)  # opens a connection
        assert len(llm._clients().clients) == 1
        server.capacity.reset_stats()
        wall, usages = await timed_calls(llm, 48)
        assert all(u.completion_tokens == 11 for u in usages)
        assert len(llm._clients().clients) == 2  # 16 in flight: two pools of eight
        await llm.aclose()
        return 48 / wall

    rate = arun(body())
    assert 0.85 * 40 <= rate <= 1.02 * 40, rate
    stats = server.stats
    assert stats.served == stats.received == 48
    assert stats.max_in_flight == 16  # the client's limit, never more


def test_a_saturating_client_reaches_the_token_ceiling_in_process(arun) -> None:
    # Ceiling: capacity / (length - 1) = 2000 / 20 = 100 calls/s, whatever the slots.
    llm = SimLLM(ttft=0.01, tps=1000, capacity=2000, lengths="fixed:21", max_concurrency=10)
    assert llm.ceiling(mean_tokens=21) == pytest.approx(100) == llm.ceiling()
    wall, _ = arun(timed_calls(llm, 60))
    assert 0.8 * 100 <= 60 / wall <= 1.02 * 100
    assert llm.limits.max_in_flight == 10 and llm.stats.max_in_flight == 10


def test_ceiling_formula() -> None:
    cap = Capacity(ttft=0.4, tps=60, slots=64, capacity=3000, rate_limit="6000/min")
    # min(3000 / 59, 64 / (0.4 + 59/60), 100)
    assert cap.calls_per_s(60) == pytest.approx(min(3000 / 59, 64 / (0.4 + 59 / 60), 100))
    assert cap.ceiling(3, 60) == pytest.approx(cap.calls_per_s(60) / 3)
    assert Capacity().calls_per_s(60) == math.inf
    with pytest.raises(LLMOptionError, match="mean_tokens"):
        Capacity(slots=2).ceiling()


def test_stats_over_http_and_rate_limit_answers_429_with_retry_after(sim_server) -> None:
    server = sim_server("ok", ttft=0.0, tps=1000, rate_limit=5)  # holds 5, then 5/s
    url = f"{server.base_url}/chat/completions"
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=5) as http:
        codes = [http.post(url, json=body) for _ in range(6)]
        assert [r.status_code for r in codes] == [200] * 5 + [429]
        retry_after = float(codes[-1].headers["retry-after"])
        assert 0.1 < retry_after <= 0.2
        time.sleep(retry_after)
        assert http.post(url, json=body).status_code == 200  # the wait was long enough
        root = server.base_url.removesuffix("/v1")
        stats = http.get(f"{root}/stats").json()
    assert stats["received"] == 7 and stats["served"] == 6 and stats["rejected"] == 1
    assert stats["in_flight"] == 0 and stats["options"]["rate_limit"] == 5
    assert server.stats.rejected == 1


def test_rate_limit_in_process_raises_a_retryable_429(arun) -> None:
    llm = SimLLM("ok", ttft=0.0, tps=1000, rate_limit="60/min")  # holds one

    async def body() -> None:
        await llm.complete(HI)
        with pytest.raises(LLMHTTPError) as info:
            await llm.complete(HI)
        assert info.value.status == 429 and info.value.retryable
        assert 0.9 < info.value.retry_after <= 1.0  # type: ignore[operator]

    arun(body())
    assert (llm.stats.received, llm.stats.rejected, llm.stats.served) == (2, 1, 1)


def test_drawn_lengths_are_reproducible_by_seed_and_a_script_keeps_priority(arun) -> None:
    def lengths(seed: int) -> list[int]:
        llm = SimLLM(lengths="lognormal:mean=60,sigma=0.5", seed=seed, ttft=0.0, tps=1e6)

        async def body() -> list[int]:
            return [(await llm.complete(HI)).usage.completion_tokens for _ in range(300)]

        return arun(body())

    first = lengths(7)
    assert first == lengths(7) and first != lengths(8)
    assert 54 <= sum(first) / len(first) <= 66 and len(set(first)) > 30
    llm = SimLLM(["a scripted reply", "", {"reply": ""}], lengths="fixed:5", ttft=0, tps=1e6)
    texts = [arun(llm.complete(HI, max_tokens=m)) for m in (None, None, 3)]
    assert texts[0].text == "a scripted reply"
    assert count_tokens(texts[1].text) == texts[1].usage.completion_tokens == 5
    assert texts[2].usage.completion_tokens == 3  # max_tokens cuts a drawn reply too


def test_non_streamed_answer_shape_and_client(sim_server, arun) -> None:
    server = sim_server(["one two three", "four five"], ttft=0.02, tps=500, slots=1)
    with httpx.Client(timeout=5) as http:
        r = http.post(f"{server.base_url}/chat/completions",
                      json={"model": "sim", "stream": False, "max_tokens": 2,
                            "messages": [{"role": "user", "content": "hi there"}]})
    answer = r.json()
    assert r.headers["content-type"].startswith("application/json")
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "one two"}
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    llm = OpenAILLM("sim", base_url=server.base_url, stream=False)
    c = arun(llm.complete(HI))
    assert c.text == "four five" and c.usage.completion_tokens == 2
    assert c.usage.finish_reason == "stop" and c.usage.ttft_s >= 0.02
    assert llm.body(llm.stream(HI)._request)["stream"] is False


def test_spec_options() -> None:
    assert parse_sim_options("slots=4,lengths=lognormal:mean=60,sigma=0.5,seed=3") == {
        "slots": 4, "lengths": Lengths("lognormal", 60, 0.5), "seed": 3}
    assert parse_sim_options("rate_limit=600/min,capacity=2e3") == {
        "rate_limit": 10.0, "capacity": 2000.0}
    llm = get_llm("sim:ttft=0,slots=2,max_concurrency=3,lengths=fixed:9")
    assert isinstance(llm, SimLLM) and llm.limits.limit == 3 and llm.capacity.slots == 2
    assert llm.spec == "sim:ttft=0,slots=2,lengths=fixed:9"  # the model, not the client
    assert parse_openai("llama3.2:1b,max_concurrency=8,stream=false") == (
        "llama3.2:1b", {"max_concurrency": 8, "stream": False})
    assert parse_openai("gpt-4o-mini") == ("gpt-4o-mini", {})
    assert parse_rate("20/s") == parse_rate(20) == parse_rate("1200/min") == 20
    with pytest.raises(LLMOptionError, match="max_concurrency is no option of it"):
        get_llm("local", max_concurrency=4)
    for bad, says in (("sim:slots=0", "slots"), ("sim:slots=two", "whole number"),
                      ("sim:lengths=normal:mean=3", "unknown lengths"),
                      ("sim:lengths=lognormal:mean=60", "sigma"),
                      ("sim:rate_limit=fast", "rate_limit"), ("sim:capacity=-1", "capacity"),
                      ("openai:m,max_concurency=2", "unknown openai option"),
                      ("openai:m,stream=maybe", "true or false"),
                      ("openai:m,max_concurrency=0", "max_concurrency")):
        with pytest.raises(LLMOptionError, match=says):
            get_llm(bad, base_url="http://127.0.0.1:9/v1") if bad.startswith("openai") \
                else get_llm(bad)


def test_sim_server_command_takes_the_capacity_flags(arun) -> None:
    port = free_port()
    cli = "import sys; import plait.cli.sim; from plait.cli._app import app; app(sys.argv[1:])"
    proc = subprocess.Popen(
        [sys.executable, "-c", cli, "sim-server", "--ttft", "0", "--tps", "1000", "--slots",
         "2", "--lengths", "lognormal:mean=8,sigma=0.3", "--seed", "5", "--rate-limit",
         "100/min", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                options = httpx.get(f"{root}/stats", timeout=1).json()["options"]
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert options["slots"] == 2 and options["seed"] == 5
        assert options["lengths"] == "lognormal:mean=8,sigma=0.3"
        assert options["rate_limit"] == pytest.approx(100 / 60)
        c = arun(OpenAILLM("sim", base_url=f"{root}/v1").complete(HI))
        assert c.usage.completion_tokens == count_tokens(c.text) >= 1
        assert json.loads(httpx.get(f"{root}/stats").text)["served"] == 1
    finally:
        proc.terminate()
        proc.wait(10)


def test_whole_replies_keep_the_timing_and_the_counts() -> None:
    """stream=False: one delta per reply, due when its last token is, with the same
    capacity, lengths and counters as a streamed reply."""
    from plait.llm import get_llm

    llm = get_llm("sim:ttft=0.02,tps=500,lengths=fixed:20,slots=2,stream=false")
    assert llm.spec == "sim:ttft=0.02,tps=500,lengths=fixed:20,slots=2"

    async def main() -> tuple[list[list[str]], float]:
        start = time.monotonic()

        async def one() -> list[str]:
            return [d async for d in llm.stream([Message("user", "x")])]

        deltas = await asyncio.gather(*(one() for _ in range(4)))
        return list(deltas), time.monotonic() - start

    deltas, elapsed = asyncio.run(main())
    assert all(len(d) == 1 and len(d[0].split()) == 20 for d in deltas)
    # Two slots, four calls of 0.02 + 19/500 s each: two rounds.
    assert 2 * (0.02 + 19 / 500) <= elapsed < 2 * (0.02 + 19 / 500) + 0.2
    assert llm.stats.served == 4 and llm.stats.completion_tokens == 80
