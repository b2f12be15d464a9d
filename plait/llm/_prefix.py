"""The simulated model's prefix cache: what it has read, so a prompt that
extends it pays only its new suffix (vLLM's automatic prefix caching, SGLang's
RadixAttention, llama-server's `cache_prompt`, in their effect on time).

An entry is a prompt as text (with role markers), later the prompt followed by
the reply the model wrote after it, so a continuation whose prefix is the
parent's prompt and reply finds both cached. A lookup returns the longest
prefix the text shares with any entry: in a sorted list that entry is next to
the text's insertion point, so a lookup is a bisection and two comparisons,
whatever the number of entries. The cache is a bounded LRU; an entry becomes
visible at the time it is ready (a prompt once its prefill is done), never
earlier, so two calls started together both pay for what they share.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import OrderedDict

DEFAULT_ENTRIES = 256


def common_prefix(a: str, b: str) -> int:
    """The length of the longest common prefix of `a` and `b` (slices compared by
    bisection: C-speed comparisons, O(n log n) characters at worst)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # invariant: a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class PrefixCache:
    """Texts the model has read, by recency; not thread-safe (one event loop)."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        if entries < 1:
            raise ValueError(f"a prefix cache holds at least one entry, got {entries}")
        self.entries = entries
        self._sorted: list[str] = []
        self._lru: OrderedDict[str, None] = OrderedDict()
        self._pending: list[tuple[float, int, str]] = []  # (ready at, seq, text)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._lru)

    def match(self, text: str, now: float) -> int:
        """Characters of `text` already read by `now` (its longest cached prefix)."""
        self._ready(now)
        i = bisect.bisect_left(self._sorted, text)
        best, entry = 0, None
        for j in (i - 1, i):
            if 0 <= j < len(self._sorted):
                n = common_prefix(text, self._sorted[j])
                if n > best:
                    best, entry = n, self._sorted[j]
        if entry is not None:
            self._lru.move_to_end(entry)
        return best

    def add(self, text: str, at: float) -> None:
        """`text` is read (cached) from time `at` on."""
        if text:
            heapq.heappush(self._pending, (at, next(self._seq), text))

    def _ready(self, now: float) -> None:
        pending = self._pending
        while pending and pending[0][0] <= now:
            text = heapq.heappop(pending)[2]
            if text in self._lru:
                self._lru.move_to_end(text)
                continue
            bisect.insort(self._sorted, text)
            self._lru[text] = None
            if len(self._lru) > self.entries:
                old, _ = self._lru.popitem(last=False)
                del self._sorted[bisect.bisect_left(self._sorted, old)]
