"""Client-side limits of one backend instance, and the retry loop that obeys them.

A call goes out once, in this order, any Retry-After pause is over, it holds
a place among the calls in flight (`max_concurrency`, adjusted by AIMD; callers
wait in FIFO order), and it has its share of the request/token rate
(`RateLimiter`).

AIMD, as TCP's congestion window: the number of calls allowed in flight
starts at `max_concurrency`. A 429 or 503 halves it (floor 1), at most once
per round: a refusal of a call sent before the last decrease does not decrease
it again (that call was sent under the old limit, its refusal is old news).
Each success adds 1/limit, so a whole limit's worth of successes adds one
(TCP's +1 per round trip), up to `max_concurrency`.

Retry-After: a retryable answer that carries one pauses every call of the
instance until then (the server said when it will take calls again); the
failed call waits for it like any other, at its next turn. Without one, the
failed call alone backs off exponentially with jitter. A Retry-After longer
than `max_backoff_s` is not waited for: the call fails with the server's error.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from plait.llm._protocol import LLMError, LLMOptionError, LLMTimeout, Meter
from plait.llm._ratelimit import RateLimiter

OVERLOAD = frozenset({429, 503})  # statuses that say: fewer calls at once, please


class AIMD:
    """The allowed concurrency as plain arithmetic (no clock, no loop)."""

    def __init__(self, ceiling: int, *, decrease: float = 0.5, increase: float = 1.0) -> None:
        if isinstance(ceiling, bool) or not isinstance(ceiling, int) or ceiling < 1:
            raise LLMOptionError(f"max_concurrency must be a whole number >= 1, got {ceiling!r}")
        if not 0 < decrease < 1 or not increase > 0:
            raise LLMOptionError("AIMD needs 0 < decrease < 1 and increase > 0")
        self.ceiling = ceiling
        self.decrease = decrease
        self.increase = increase
        self.limit = float(ceiling)
        self.epoch = 0  # how many decreases so far: a call remembers the one it was sent in

    @property
    def allowed(self) -> int:
        return max(1, math.floor(self.limit + 1e-9))

    def success(self) -> None:
        self.limit = min(float(self.ceiling), self.limit + self.increase / self.limit)

    def overload(self, epoch: int) -> bool:
        """A call sent in `epoch` was refused: decrease, unless already done since."""
        if epoch != self.epoch:
            return False
        self.limit = max(1.0, self.limit * self.decrease)
        self.epoch += 1
        return True


@dataclass(frozen=True, slots=True)
class Retry:
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, error: LLMError) -> float | None:
        """Seconds to wait before retry `attempt` (1-based), or None: give up."""
        if not error.retryable or attempt > self.max_retries:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after if retry_after <= self.max_backoff_s else None
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


def _wake(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)


class Limits:
    """What one backend instance may send at once and per minute (see the module
    docstring). `in_flight` and `max_in_flight` count the calls holding a turn
    now and at most (out, or about to go once a pause or the rate lets them);
    `limit` is the concurrency allowed now (None: no cap)."""

    def __init__(self, max_concurrency: int | None = None,
                 requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.aimd = AIMD(max_concurrency) if max_concurrency is not None else None
        self.rate = (RateLimiter(requests_per_minute, tokens_per_minute, clock=clock)
                     if requests_per_minute or tokens_per_minute else None)
        self._clock = clock
        self._pause_until = -math.inf
        self.in_flight = 0
        self.max_in_flight = 0
        self.overloads = 0  # 429/503 answers seen
        self._waiters: deque[asyncio.Future[int]] = deque()
        # Calls may come from several event loops (one OpenAILLM used by threads).
        self._lock = threading.Lock()

    @property
    def limit(self) -> int | None:
        return None if self.aimd is None else self.aimd.allowed

    @property
    def max_concurrency(self) -> int | None:
        return None if self.aimd is None else self.aimd.ceiling

    def pause(self, seconds: float) -> None:
        """Send nothing before `seconds` from now."""
        with self._lock:
            self._pause_until = max(self._pause_until, self._clock() + seconds)

    def paused_for(self) -> float:
        return max(0.0, self._pause_until - self._clock())

    def _take(self) -> int:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.aimd.epoch if self.aimd is not None else 0

    def take_now(self) -> int | None:
        """A turn at once, when nothing can make a call wait (no concurrency cap, no
        rate, no pause: the usual in-process case), without a coroutine; else None
        (then `acquire`)."""
        if self.aimd is not None or self.rate is not None or self._pause_until > -math.inf:
            return None
        with self._lock:
            return self._take()

    async def acquire(self, tokens: int = 0) -> int:
        """Wait for a turn; returns the ticket to give back to `release`."""
        while (wait := self.paused_for()) > 0:  # a paused call holds no turn
            await asyncio.sleep(wait)
        fut: asyncio.Future[int] | None = None
        with self._lock:
            if self.aimd is None or (not self._waiters and self.in_flight < self.aimd.allowed):
                ticket = self._take()
            else:
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
        if fut is not None:
            try:
                ticket = await fut  # granted by a release: counted in flight already
            except BaseException:
                with self._lock:
                    if fut.done() and not fut.cancelled():
                        self._give_back()
                    elif fut in self._waiters:
                        self._waiters.remove(fut)
                raise
        try:
            while (wait := self.paused_for()) > 0:  # a pause that began while it waited
                await asyncio.sleep(wait)
            if self.rate is not None:
                await self.rate.acquire(tokens)
        except BaseException:
            self.release(ticket, None, settled=False)
            raise
        return ticket

    def release(self, ticket: int, error: BaseException | None, *, ok: bool = False,
                estimated: int = 0, actual: int | None = None, settled: bool = True) -> None:
        """A call is over: `ok` (a whole answer), or failed with `error`, or
        neither (abandoned by its caller: no verdict on the server)."""
        with self._lock:
            if isinstance(error, LLMError) and getattr(error, "status", None) in OVERLOAD:
                self.overloads += 1
                if self.aimd is not None:
                    self.aimd.overload(ticket)
            elif ok and self.aimd is not None:
                self.aimd.success()
            self._give_back()
        if ok and settled and self.rate is not None and actual is not None:
            self.rate.settle(estimated, actual)

    def resize(self, max_concurrency: int | None = None,
               requests_per_minute: float | None = None,
               tokens_per_minute: float | None = None) -> None:
        """New limits for the calls from now on (a sharded job's controller moves
        budget between workers). Calls in flight keep their turn; a lower cap is
        reached as they end, a higher one lets waiters in at once."""
        with self._lock:
            if max_concurrency is None:
                self.aimd = None
            elif self.aimd is None:
                self.aimd = AIMD(max_concurrency)
            else:
                # Keep what AIMD learned of the server (a cut stays a cut), within the cap.
                fraction = self.aimd.limit / self.aimd.ceiling
                self.aimd.ceiling = max_concurrency
                self.aimd.limit = max(1.0, max_concurrency * fraction)
            self.rate = (RateLimiter(requests_per_minute, tokens_per_minute, clock=self._clock)
                         if requests_per_minute or tokens_per_minute else None)
            self._let_in()

    def _give_back(self) -> None:
        """One call fewer in flight; let waiters in while there is room (lock held)."""
        self.in_flight -= 1
        self._let_in()

    def _let_in(self) -> None:
        """Grant waiting calls their turn while there is room (lock held)."""
        while self._waiters and (self.aimd is None or self.in_flight < self.aimd.allowed):
            fut = self._waiters.popleft()
            if fut.done():
                continue
            ticket = self._take()
            loop = fut.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                fut.set_result(ticket)
            else:
                loop.call_soon_threadsafe(_wake, fut, ticket)


async def limited(attempt: Callable[[], AsyncIterator[str]], meter: Meter, *,
                  limits: Limits, retry: Retry, estimate: int) -> AsyncIterator[str]:
    """Run `attempt()` within `limits`, retrying as `retry` says. A call that
    has yielded text is never retried here (the caller holds part of it), nor is
    a read timeout (it already cost `read_timeout`)."""
    tries = 0
    while True:
        ticket = limits.take_now()
        if ticket is None:
            ticket = await limits.acquire(estimate)
        sent = 0
        deltas = attempt()
        exhausted = False
        try:
            async for delta in deltas:
                sent += 1
                yield delta
            exhausted = True
        except LLMError as error:
            limits.release(ticket, error)
            if isinstance(error, LLMTimeout):
                raise
            tries += 1
            delay = None if sent else retry.delay(tries, error)
            if delay is None:
                raise
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                limits.pause(retry_after)  # waited at the next acquire, by every call
            else:
                await asyncio.sleep(delay)
            continue
        except BaseException:
            limits.release(ticket, None)
            raise
        finally:
            # Now, not when collected: a simulated call frees its slot here. (An
            # exhausted one has run its own `finally` already: nothing to close.)
            if not exhausted:
                await deltas.aclose()
        actual = (None if meter.prompt_tokens is None
                  else meter.prompt_tokens + (meter.completion_tokens or 0))
        limits.release(ticket, None, ok=True, estimated=estimate, actual=actual)
        return
