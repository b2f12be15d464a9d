"""The client-side rate limit: bucket arithmetic on a fake clock, then for real."""

from __future__ import annotations

import asyncio
import time

import pytest

from plait.llm import Message, OpenAILLM, RateLimiter
from plait.llm._ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_second_of_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(120, clock=clock)  # 2 per second, holds 2
    assert bucket.reserve(1) == 0 and bucket.reserve(1) == 0
    assert bucket.reserve(1) == pytest.approx(0.5)
    assert bucket.reserve(1) == pytest.approx(1.0)  # queued behind the previous caller
    clock.now = 10.0  # refilled, but never above capacity
    assert bucket.reserve(2) == 0 and bucket.reserve(1) == pytest.approx(0.5)


def test_expensive_call_waits_for_a_full_bucket_and_leaves_a_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(600, clock=clock)  # 10 tokens/s, holds 10
    assert bucket.reserve(30) == 0  # dearer than the bucket: goes at once when full
    assert bucket.reserve(5) == pytest.approx(2.5)  # the debt of 20 plus its own 5, at 10/s
    bucket.adjust(-10)  # the first call was cheaper than estimated: credit
    clock.now = 5.0
    assert bucket.reserve(10) == 0


def test_limiter_combines_both_limits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=6000, tokens_per_minute=60, clock=clock)
    assert limiter.reserve(1) == 0
    assert limiter.reserve(1) == pytest.approx(1.0)  # tokens bind: 1 token/s
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_requests_per_minute_paces_real_calls(sim_server, arun) -> None:
    server = sim_server("ok", ttft=0.0, tps=1000)
    llm = OpenAILLM("sim", base_url=server.base_url, requests_per_minute=300)  # 5/s, burst 5

    async def body() -> list[float]:
        start = time.monotonic()
        done: list[float] = []

        async def call() -> None:
            await llm.complete([Message("user", "hi")])
            done.append(time.monotonic() - start)

        await asyncio.gather(*(call() for _ in range(10)))
        await llm.aclose()
        return sorted(done)

    done = arun(body())
    assert done[4] < 0.5  # the burst goes at once
    assert 0.95 <= done[-1] < 2.5  # the other five are paced at 5/s
