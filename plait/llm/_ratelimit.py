"""Client-side rate limit: requests per minute and tokens per minute.

Each limit is a token bucket that refills continuously at limit/60 per second
and holds at most one second's worth (at least one request, or the cost of
one call): the limit is smoothed rather than spent in a burst at the start of
each minute, so the server's own window is never exceeded.

A reservation debits the bucket at once, even below zero; the caller then
sleeps until the debt is repaid. Callers are served in the order they ask and
no lock is held while sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0:
            raise ValueError(f"a rate limit must be > 0 per minute, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._clock = clock
        self._level = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, cost: float) -> float:
        """Debit `cost`; return how many seconds to wait before going ahead."""
        with self._lock:
            now = self._clock()
            self._level = min(self.capacity, self._level + (now - self._last) * self.rate)
            self._last = now
            # A call dearer than the bucket proceeds once it is full, leaving a debt.
            self._level -= cost
            debt = -self._level - max(0.0, cost - self.capacity)
            return max(0.0, debt / self.rate)

    def adjust(self, extra: float) -> None:
        """Debit (or credit, if negative) a correction once the real cost is known."""
        with self._lock:
            self._level = min(self.capacity, self._level - extra)


class RateLimiter:
    """Both limits together; None disables one."""

    def __init__(self, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None,
                 *, clock: Callable[[], float] = time.monotonic):
        self.requests = TokenBucket(requests_per_minute, clock=clock) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute, clock=clock) if tokens_per_minute else None

    def reserve(self, tokens: int) -> float:
        waits = [0.0]
        if self.requests is not None:
            waits.append(self.requests.reserve(1))
        if self.tokens is not None:
            waits.append(self.tokens.reserve(tokens))
        return max(waits)

    async def acquire(self, tokens: int) -> None:
        wait = self.reserve(tokens)
        if wait > 0:
            await asyncio.sleep(wait)

    def settle(self, estimated: int, actual: int) -> None:
        if self.tokens is not None and actual != estimated:
            self.tokens.adjust(actual - estimated)
