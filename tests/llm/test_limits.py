"""Client-side limits: AIMD arithmetic and the waiting room without a server,
then a real sim server that answers 429 above a rate."""

from __future__ import annotations

import asyncio
import time

import pytest

from plait.llm import LLMHTTPError, LLMOptionError, Message, OpenAILLM, SimLLM
from plait.llm._limits import AIMD, Limits, Retry
from plait.llm._protocol import LLMConnectionError

HI = [Message("user", "hi")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_aimd_halves_once_per_round_and_grows_back_by_one_per_window() -> None:
    aimd = AIMD(8)
    assert aimd.allowed == 8
    sent_before = aimd.epoch
    assert aimd.overload(sent_before) and aimd.allowed == 4
    # the other calls sent under the old limit are refused too: no further decrease
    assert not aimd.overload(sent_before) and aimd.allowed == 4
    assert aimd.overload(aimd.epoch) and aimd.allowed == 2
    for _ in range(5):
        aimd.overload(aimd.epoch)
    assert aimd.limit == 1.0 and aimd.allowed == 1  # the floor
    aimd.success()
    assert aimd.allowed == 2  # +1/limit: one window of one success
    for _ in range(3):
        aimd.success()
    assert aimd.allowed == 3  # 2 + 1/2 + 1/2.5 + 1/2.9: about one per window of two
    for _ in range(100):
        aimd.success()
    assert aimd.limit == 8.0  # the ceiling
    for bad in (0, -1, 2.5, True):
        with pytest.raises(LLMOptionError, match="max_concurrency"):
            AIMD(bad)  # type: ignore[arg-type]


def test_retry_delay_honours_retry_after_within_the_cap() -> None:
    retry = Retry(max_retries=2, backoff_s=0.1, max_backoff_s=5)
    assert retry.delay(1, LLMHTTPError(429, "x", retry_after=2)) == 2
    assert retry.delay(1, LLMHTTPError(503, "x", retry_after=60)) is None  # beyond the cap
    assert retry.delay(1, LLMHTTPError(400, "x")) is None  # not retryable
    assert retry.delay(3, LLMHTTPError(500, "x")) is None  # out of retries
    assert 0.1 <= retry.delay(2, LLMConnectionError("x")) <= 0.2  # type: ignore[operator]


def test_pause_and_overloads_on_a_fake_clock(arun) -> None:
    clock = FakeClock()
    limits = Limits(4, clock=clock)
    limits.pause(2.0)
    assert limits.paused_for() == 2.0
    limits.pause(0.5)  # a shorter pause does not shorten the longer one
    clock.now += 1.5
    assert limits.paused_for() == pytest.approx(0.5)
    clock.now += 1
    assert limits.paused_for() == 0

    async def body() -> None:
        tickets = [await limits.acquire() for _ in range(4)]
        assert limits.in_flight == 4 and limits.limit == 4
        for t in tickets[:3]:  # three refusals of one round: one decrease
            limits.release(t, LLMHTTPError(429, "slow down"))
        assert (limits.limit, limits.overloads, limits.in_flight) == (2, 3, 1)
        limits.release(tickets[3], LLMHTTPError(500, "not an overload"))
        assert limits.limit == 2 and limits.overloads == 3

    arun(body())


def test_waiters_go_in_order_and_never_above_the_limit(arun) -> None:
    limits = Limits(3)
    order: list[int] = []
    peak = 0

    async def call(i: int) -> None:
        nonlocal peak
        ticket = await limits.acquire()
        order.append(i)
        peak = max(peak, limits.in_flight)
        await asyncio.sleep(0.01)
        limits.release(ticket, None, ok=True)

    async def body() -> None:
        tasks = [asyncio.create_task(call(i)) for i in range(12)]
        await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    arun(body())
    assert order == list(range(12)) and peak == 3 == limits.max_in_flight
    assert limits.in_flight == 0


def test_a_cancelled_waiter_leaks_no_place(arun) -> None:
    limits = Limits(1)

    async def body() -> None:
        first = await limits.acquire()
        waiter = asyncio.create_task(limits.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        limits.release(first, None, ok=True)  # would have gone to the cancelled waiter
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limits.in_flight == 0
        await asyncio.wait_for(limits.acquire(), 1)  # the place is free

    arun(body())


def test_retry_after_pauses_every_call_of_the_instance(sim_server, arun) -> None:
    server = sim_server([
        {"match": "first", "reply": "", "times": 1, "fault": {"status": 429, "retry_after": 0.4}},
        {"reply": "ok"}], ttft=0.0, tps=1000)
    llm = OpenAILLM("sim", base_url=server.base_url, max_concurrency=4, backoff_s=0.01)

    async def body() -> tuple[float, float]:
        start = time.monotonic()
        first = asyncio.create_task(llm.complete([Message("user", "first")]))
        while llm.limits.overloads == 0:  # the 429 has come back
            await asyncio.sleep(0.005)
        other = await llm.complete([Message("user", "second")])  # sent after the 429
        assert other.text == "ok" and (await first).text == "ok"
        await llm.aclose()
        return time.monotonic() - start, other.usage.total_s

    total, other_s = arun(body())
    assert 0.4 <= total < 1.5
    assert other_s >= 0.3  # it waited for the Retry-After, though it was never refused
    assert server.stats.served == 2 and server.stats.received == 3


@pytest.mark.parametrize("where", ["http", "in-process"])
def test_aimd_backs_off_on_429s_recovers_and_loses_no_call(where, sim_server, arun) -> None:
    options = {"ttft": 0.01, "tps": 1000, "rate_limit": 20}  # holds 20, then 20/s
    limit = {"max_concurrency": 8, "max_retries": 30, "backoff_s": 0.01}
    if where == "http":
        server = sim_server("ok", **options)
        llm = OpenAILLM("sim", base_url=server.base_url, **limit)
        model = server
    else:
        llm = model = SimLLM("ok", **options, **limit)
    limits_seen: list[int] = []
    in_flight_seen: list[int] = []  # while more calls than the ceiling were still to do
    done = 0

    async def watch() -> None:
        while True:
            limits_seen.append(llm.limits.limit)  # type: ignore[arg-type]
            if 60 - done > 8:
                in_flight_seen.append(llm.limits.in_flight)
            await asyncio.sleep(0.005)

    async def call() -> str:
        nonlocal done
        text = (await llm.complete(HI)).text
        done += 1
        return text

    async def body() -> list[str]:
        watcher = asyncio.create_task(watch())
        texts = await asyncio.gather(*(call() for _ in range(60)))
        watcher.cancel()
        await llm.aclose()
        return texts

    start = time.monotonic()
    texts = arun(body())
    assert texts == ["ok"] * 60  # no call lost
    assert time.monotonic() - start >= (60 - 20) / 20 * 0.9  # the rate held
    s = model.stats
    # The server counts a reply as served after its last byte went out: the client
    # may have read it a moment before.
    deadline = time.monotonic() + 2
    while s.served < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
        s = model.stats
    assert s.served == 60 and s.rejected >= 1 and s.received == 60 + s.rejected
    assert llm.limits.overloads == s.rejected
    assert s.max_in_flight <= 8 and llm.limits.max_in_flight <= 8
    low = min(limits_seen)
    assert low <= 4  # backed off
    assert max(limits_seen[limits_seen.index(low):]) > low  # and grew back
    full = in_flight_seen.index(8)  # raises if the client never had 8 out
    assert min(in_flight_seen[full:]) <= 4  # then fewer out, with work still waiting
