"""The simulated model's capacity: slots, a shared token rate, reply lengths, a
request-rate limit and counters. One implementation, used by the in-process
`sim` backend and by `plait sim-server` alike.

What a call goes through, in order:

1. ``rate_limit=R`` (requests/s): beyond it (a token bucket holding one
   second's worth, at least one call) the call is refused at once with a 429
   and ``Retry-After`` = seconds until a call would be let in. It takes no slot.
2. ``slots=S``: at most S calls hold a slot; the others wait in FIFO order (as
   vLLM's ``--max-num-seqs``). A call holds its slot from admission to its last
   token, and its clock starts at admission, so queue time counts in its ttft.
3. ``ttft``: the first token comes ``ttft`` after admission (prefill: it uses
   none of the shared token rate).
4. decode: each further token costs one unit of the shared rate. The n calls
   decoding at once each go at ``r(n) = min(tps, capacity / n)`` tokens/s
   (processor sharing; without ``capacity``, ``r = tps`` whatever n is, as
   before). Token i of a call is sent when its decode progress reaches i.

Ceiling. For replies of mean length L tokens, calls/s can never exceed::

    X* = min(capacity / (L - 1),  S / (ttft + (L - 1) / tps),  rate_limit)

The first term is token conservation, the second Little's law (each call holds
a slot at least ttft + (L - 1)/tps), the third the refusals. A client that
keeps more than S calls waiting reaches the smaller one (in the fluid limit
exactly: see `ceiling`). A pipeline of ``calls_per_row`` such calls per row
runs at most ``X* / calls_per_row`` rows/s. A missing option is no bound.

``lengths=lognormal:mean=60,sigma=0.5`` (or ``fixed:N``) draws reply lengths
from a seeded generator (``seed=``): a call whose script gives no reply text
gets that many tokens of filler; a scripted reply keeps its own text.

Counters (`SimStats`): calls received, served whole, refused by the rate limit,
in flight now and at most, waiting for a slot now, completion tokens sent.

Slots and capacity hold asyncio futures and a timer: while calls are in
flight, they serve one event loop (the server's; `SimLLM` rebinds when idle).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from plait.llm._protocol import LLMError, LLMHTTPError, LLMOptionError
from plait.llm._tokens import WORD, Tokens

DEFAULT_TTFT = 0.4
DEFAULT_TPS = 60.0
# Decode progress within this many tokens of a target counts as there: the
# virtual clock is a sum of float products.
_EPS = 1e-6
_FILLER = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit",
           "sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore",
           "magna", "aliqua"]


async def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# ---------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Lengths:
    """Reply lengths in tokens: ``fixed`` (always `mean`) or ``lognormal`` with
    that mean and `sigma` (of the underlying normal). Each draw is at least 1."""

    kind: str
    mean: float
    sigma: float = 0.0

    KINDS = ("fixed", "lognormal")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise LLMOptionError(f"unknown lengths distribution {self.kind!r}; known: "
                                 "fixed:N, lognormal:mean=M,sigma=S")
        if not self.mean >= 1 or not self.sigma >= 0 or math.isinf(self.mean + self.sigma):
            raise LLMOptionError(f"lengths need mean >= 1 and sigma >= 0, got "
                                 f"mean={self.mean}, sigma={self.sigma}")

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return max(1, round(self.mean))
        mu = math.log(self.mean) - self.sigma ** 2 / 2  # so that E[x] = mean
        return max(1, round(rng.lognormvariate(mu, self.sigma)))

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.mean:g}"
        return f"lognormal:mean={self.mean:g},sigma={self.sigma:g}"

    @classmethod
    def parse(cls, text: str) -> Lengths:
        """``fixed:40``, ``fixed:mean=40``, ``lognormal:mean=60,sigma=0.5``."""
        kind, _, rest = text.strip().partition(":")
        kind = kind.strip()
        params: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:  # fixed:40
                key, value = "mean", key
            key = key.strip()
            if key not in ("mean", "sigma") or key in params:
                raise LLMOptionError(f"lengths {text!r}: unknown or repeated parameter "
                                     f"{key!r}; write fixed:N or lognormal:mean=M,sigma=S")
            try:
                params[key] = float(value)
            except ValueError:
                raise LLMOptionError(f"lengths {text!r}: {key} must be a number, "
                                     f"got {value!r}") from None
        if "mean" not in params:
            raise LLMOptionError(f"lengths {text!r} need a mean: fixed:N or "
                                 "lognormal:mean=M,sigma=S")
        if kind == "lognormal" and "sigma" not in params:
            raise LLMOptionError(f"lengths {text!r} need a sigma: lognormal:mean=M,sigma=S")
        return cls(kind, params["mean"], params.get("sigma", 0.0))


def parse_rate(text: str | float) -> float:
    """Requests per second from ``20``, ``20/s`` or ``600/min``."""
    if isinstance(text, (int, float)):
        value, unit = float(text), "s"
    else:
        m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(?:/\s*(s|sec|second|min|minute))?\s*", text)
        try:
            value = float(m.group(1)) if m else math.nan
        except ValueError:
            value = math.nan
        unit = (m.group(2) or "s") if m else "s"
        if math.isnan(value):
            raise LLMOptionError(f"rate_limit {text!r} is not a rate; write N (per second), "
                                 "N/s or N/min")
    per_s = value / 60 if unit.startswith("min") else value
    if not per_s > 0 or math.isinf(per_s):
        raise LLMOptionError(f"rate_limit must be > 0, got {text!r}")
    return per_s


@dataclass(frozen=True, slots=True)
class SimStats:
    received: int  # calls that reached the model (a malformed HTTP request does not)
    served: int  # whole replies sent
    rejected: int  # refused with a 429 by `rate_limit`
    in_flight: int  # received, not finished (waiting for a slot or answering)
    max_in_flight: int  # the most in flight at once since the start
    queued: int  # waiting for a slot now
    completion_tokens: int  # tokens of the whole replies served

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# ---------------------------------------------------------------- the shared rate


class _SharedRate:
    """Processor sharing on a virtual clock: `v` is the decode progress (tokens)
    of every call decoding since the clock began; it runs at r(n). A call that
    joins at v0 has its token i due when v reaches v0 + i. One timer, set for
    the earliest target, is moved whenever n changes the rate."""

    def __init__(self, tps: float, capacity: float, loop: asyncio.AbstractEventLoop) -> None:
        self.tps = tps
        self.capacity = capacity
        self.loop = loop
        self.n = 0
        self.v = 0.0
        self.t = time.monotonic()
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def rate(self) -> float:
        return min(self.tps, self.capacity / self.n) if self.n else self.tps

    def _advance(self) -> None:
        now = time.monotonic()
        if self.n:
            self.v += self.rate() * (now - self.t)
        self.t = now

    def join(self) -> float:
        self._advance()
        before = self.rate()
        self.n += 1
        if self.rate() != before:
            self._arm()
        return self.v

    def leave(self) -> None:
        self._advance()
        before = self.rate()
        self.n -= 1
        if self.rate() != before:
            self._arm()

    async def until(self, target: float) -> None:
        self._advance()
        if target <= self.v + _EPS:
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        heapq.heappush(self._heap, (target, next(self._seq), fut))
        if self._heap[0][2] is fut:
            self._arm()
        await fut

    def _fire(self) -> None:
        self._timer = None
        self._advance()
        heap = self._heap
        while heap and heap[0][0] <= self.v + _EPS:
            fut = heapq.heappop(heap)[2]
            if not fut.done():
                fut.set_result(None)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        heap = self._heap
        while heap and heap[0][2].done():  # a cancelled waiter
            heapq.heappop(heap)
        if heap:
            delay = (heap[0][0] - self.v) / self.rate() - (time.monotonic() - self.t)
            self._timer = self.loop.call_later(max(0.0, delay), self._fire)


# ---------------------------------------------------------------- the model


class Capacity:
    """The capacity model of one simulated server (see the module docstring)."""

    def __init__(self, *, ttft: float = DEFAULT_TTFT, tps: float = DEFAULT_TPS,
                 slots: int | None = None, capacity: float | None = None,
                 lengths: Lengths | str | None = None, seed: int = 0,
                 rate_limit: float | str | None = None,
                 tokens: Tokens | str = WORD) -> None:
        if not ttft >= 0 or not tps > 0:
            raise LLMOptionError(f"sim needs ttft >= 0 and tps > 0, got ttft={ttft}, tps={tps}")
        if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int)
                                  or slots < 1):
            raise LLMOptionError(f"sim slots must be a whole number >= 1, got {slots!r}")
        if capacity is not None and not capacity > 0:
            raise LLMOptionError(f"sim capacity (tokens/s) must be > 0, got {capacity!r}")
        self.ttft = float(ttft)
        self.tps = float(tps)
        self.slots = slots
        self.capacity = None if capacity is None else float(capacity)
        self.lengths = Lengths.parse(lengths) if isinstance(lengths, str) else lengths
        self.seed = seed
        self.rate_limit = None if rate_limit is None else parse_rate(rate_limit)
        self.tokens = Tokens.named(tokens)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()  # counters and the bucket: stats are read from any thread
        self._bucket = self.rate_limit and max(1.0, self.rate_limit)
        self._bucket_t = time.monotonic()
        self._received = self._served = self._rejected = self._tokens = 0
        self._in_flight = self._max_in_flight = 0
        # Slots and the shared rate: touched on the bound loop only.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = 0
        self._queue: deque[asyncio.Future[None]] = deque()
        self._shared: _SharedRate | None = None

    def options(self) -> dict[str, Any]:
        return {"ttft": self.ttft, "tps": self.tps, "slots": self.slots,
                "capacity": self.capacity, "rate_limit": self.rate_limit,
                "lengths": None if self.lengths is None else str(self.lengths),
                "seed": self.seed, "tokens": self.tokens.name}

    # ------------------------------------------------------------ the ceiling

    def calls_per_s(self, mean_tokens: float | None = None) -> float:
        """X*: the most calls/s this server answers (math.inf: no bound).
        `mean_tokens` defaults to the mean of `lengths`."""
        if mean_tokens is None:
            if self.lengths is None:
                raise LLMOptionError("pass mean_tokens= (the mean reply length): this sim "
                                     "draws no lengths")
            mean_tokens = self.lengths.mean
        decode = max(0.0, mean_tokens - 1)  # the first token comes from prefill
        bounds = [math.inf]
        if self.capacity is not None and decode > 0:
            bounds.append(self.capacity / decode)
        if self.slots is not None:
            hold = self.ttft + decode / self.tps
            bounds.append(self.slots / hold if hold > 0 else math.inf)
        if self.rate_limit is not None:
            bounds.append(self.rate_limit)
        return min(bounds)

    def ceiling(self, calls_per_row: float = 1, mean_tokens: float | None = None) -> float:
        """The most rows/s a pipeline making `calls_per_row` calls of
        `mean_tokens` tokens per row can reach on this server."""
        if not calls_per_row > 0:
            raise LLMOptionError(f"calls_per_row must be > 0, got {calls_per_row}")
        return self.calls_per_s(mean_tokens) / calls_per_row

    # ------------------------------------------------------------ lengths

    def filler(self) -> str | None:
        """Filler text of a drawn length (None without `lengths`)."""
        if self.lengths is None:
            return None
        with self._lock:
            n = self.lengths.draw(self._rng)
        words = _FILLER * (n // len(_FILLER) + 1)
        text = " ".join(words[:n])
        # n words are at least n tokens of any kind: cut to n of this sim's own
        return text if self.tokens is WORD else self.tokens.cut(text, n)

    # ------------------------------------------------------------ counters

    @property
    def stats(self) -> SimStats:
        with self._lock:
            return SimStats(self._received, self._served, self._rejected, self._in_flight,
                            self._max_in_flight, len(self._queue), self._tokens)

    def reset_stats(self) -> None:
        """Zero the totals (calls in flight stay counted), e.g. after a warm-up."""
        with self._lock:
            self._received = self._served = self._rejected = self._tokens = 0
            self._max_in_flight = self._in_flight

    # ------------------------------------------------------------ calls

    def open(self, arrived: float | None = None) -> SimCall:
        """Receive a call (that arrived at `arrived`, default now): refused here
        with `LLMHTTPError` 429 beyond `rate_limit`. The caller must `close()`
        the call it gets, whatever happens."""
        now = time.monotonic()
        with self._lock:
            self._received += 1
            if self.rate_limit is not None:
                level = min(max(1.0, self.rate_limit),
                            self._bucket + (now - self._bucket_t) * self.rate_limit)
                self._bucket_t = now
                if level < 1:
                    self._bucket = level
                    self._rejected += 1
                    wait = (1 - level) / self.rate_limit
                    raise LLMHTTPError(429, f"over the sim's rate limit of "
                                       f"{self.rate_limit:g} requests/s", retry_after=wait)
                self._bucket = level - 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        if self.slots is not None or self.capacity is not None:
            self._bind()
        return SimCall(self, now if arrived is None else arrived)

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._active or self._queue or (self._shared is not None and self._shared.n):
            raise LLMError("a sim with slots or capacity serves one event loop at a time; "
                           "this one is busy on another")
        self._loop = loop
        self._shared = (None if self.capacity is None
                        else _SharedRate(self.tps, self.capacity, loop))

    def _served_one(self, tokens: int) -> None:
        with self._lock:
            self._served += 1
            self._tokens += tokens

    def _closed(self) -> None:
        with self._lock:
            self._in_flight -= 1

    async def _admit(self) -> bool:
        """Take a slot, waiting in FIFO order; True if the call had to wait."""
        if self._active < self.slots and not self._queue:  # type: ignore[operator]
            self._active += 1
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        try:
            await fut  # the releaser hands its slot over: _active unchanged
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._release()  # granted, then cancelled: pass it on
            else:
                try:
                    self._queue.remove(fut)
                except ValueError:  # a releaser already skipped it
                    pass
            raise
        return True

    def _release(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._active -= 1


class SimCall:
    """One call's passage through the model: `admit()`, then `pieces(n)` or
    `finish(n)`, then `close()` (always)."""

    __slots__ = ("_cap", "_closed", "_decoding", "_slot", "start")

    def __init__(self, cap: Capacity, arrived: float) -> None:
        self._cap = cap
        self.start = arrived  # ttft counts from here: arrival, or admission after a wait
        self._slot = False
        self._decoding = False
        self._closed = False

    async def admit(self) -> None:
        cap = self._cap
        if cap.slots is None:
            return
        if await cap._admit():
            self.start = time.monotonic()
        self._slot = True

    async def pieces(self, count: int) -> AsyncIterator[int]:
        """Yield 0..count-1, each when that token is due."""
        cap, shared = self._cap, self._cap._shared
        if shared is None:
            for i in range(count):  # absolute deadlines: a late wake-up catches up
                await sleep_until(self.start + cap.ttft + i / cap.tps)
                if i == count - 1:
                    self._end_decode()
                yield i
            self._end_decode()
            return
        if count:
            await sleep_until(self.start + cap.ttft)
        v0 = self._join(count)
        for i in range(count):
            if i:
                await shared.until(v0 + i)
            if i == count - 1:
                self._end_decode()
            yield i
        self._end_decode()

    async def finish(self, count: int) -> None:
        """Wait until the last of `count` tokens is due (a reply sent whole)."""
        cap, shared = self._cap, self._cap._shared
        if shared is None or count <= 1:
            await sleep_until(self.start + cap.ttft + max(0, count - 1) / cap.tps)
        else:
            await sleep_until(self.start + cap.ttft)
            v0 = self._join(count)
            await shared.until(v0 + count - 1)
        self._end_decode()

    def served(self, tokens: int) -> None:
        self._cap._served_one(tokens)

    def _join(self, count: int) -> float:
        shared = self._cap._shared
        assert shared is not None
        if count <= 1:
            return shared.v
        self._decoding = True
        return shared.join()

    def _end_decode(self) -> None:
        """Leave the decoders and free the slot: the last token is out."""
        if self._decoding:
            self._decoding = False
            self._cap._shared.leave()  # type: ignore[union-attr]
        if self._slot:
            self._slot = False
            self._cap._release()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._end_decode()
        self._cap._closed()
