"""The streaming fork parser: finds where a segment opens a parallel block and
where the block's item list ends (the trigger), and reads the block's items.

`feed(delta)` takes deltas of any size and returns the `Opening` the moment its
trigger is complete; `close(finish_reason)` ends the stream. A server that honours
the trigger as a stop string never sends it: a stream that ends normally ("stop")
while a block's item list is open stopped at the trigger, so `close` returns that
block (the driver re-appends the trigger, as ThreadWeaver's orchestrator re-appends
the matched stop). A stream cut by its length bound inside an open list is no block.

Linear in the input: each delta is searched once for the two tags, with an overlap
of one tag's length less one so a tag split across deltas is found; a block's item
list is read once, when its trigger is found. The same text gives the same block
and the same `text` however it is cut into deltas.
"""

from __future__ import annotations

from dataclasses import dataclass

from plait.reason._formats import ForkFormat

# Problem kinds: a block that was not forked as written, and why.
NO_ITEMS = "no_items"  # the list has no item the format can read
DUPLICATES = "duplicates"  # an item number written twice: forked once (ThreadWeaver)
TOO_MANY = "too_many"  # more items than max_threads
TOO_DEEP = "too_deep"  # a block inside threads nested max_depth deep
TOO_MANY_BLOCKS = "too_many_blocks"  # past max_blocks
THREAD_FAILED = "thread_failed"  # a thread's call failed
THREAD_CUT = "thread_cut"  # a thread hit its length bound
BUDGET = "budget"  # the trajectory's token budget is spent


@dataclass(frozen=True, slots=True)
class Opening:
    """A parallel block's item list as the segment wrote it.

    `end` is where the segment's text ends: just after the trigger (which `text`
    always holds, even when the server stopped before sending it). `items` are
    (number, spec) in order as written; `numbers` de-duplicated in order.
    """

    start: int  # offset of the opener in the segment's text (-1: none before the trigger)
    end: int
    items: tuple[tuple[str, str], ...]

    @property
    def numbers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for n, _ in self.items))

    @property
    def duplicated(self) -> bool:
        return len(self.numbers) != len(self.items)


class ForkParser:
    """Incremental reader of one segment's stream (see the module's docstring)."""

    def __init__(self, fork: ForkFormat) -> None:
        self.fork = fork
        self.block: Opening | None = None
        self.closed = False
        self._parts: list[str] = []
        self._len = 0
        self._scanned = 0  # tags are searched from here (less the overlap)
        self._opener = -1  # offset of the last opener seen
        self._overlap = max(len(fork.opener), len(fork.trigger)) - 1

    @property
    def text(self) -> str:
        """The segment's text: up to and with the trigger once a block is found."""
        whole = "".join(self._parts)
        if self.block is not None:
            trigger = self.fork.trigger
            end = self.block.end
            if whole[end - len(trigger): end] != trigger:  # the server stopped at it
                return whole[: end - len(trigger)] + trigger
            return whole[:end]
        return whole

    @property
    def open(self) -> bool:
        """A block's item list is open: an opener with no trigger after it yet."""
        return self._opener >= 0 and self.block is None

    def feed(self, delta: str) -> Opening | None:
        if self.closed:
            raise RuntimeError("feed() after close()")
        if not delta or self.block is not None:
            if delta:  # text after the trigger (a server that ignored the stop): kept, cut
                self._parts.append(delta)
                self._len += len(delta)
            return None
        self._parts.append(delta)
        self._len += len(delta)
        start = max(0, self._scanned - self._overlap)
        # The window holds the overlap and the new delta only: linear overall.
        window = self._tail(start)
        self._scanned = self._len
        opener, trigger = self.fork.opener, self.fork.trigger
        t = window.find(trigger)
        o = window.rfind(opener, 0, t if t >= 0 else len(window))
        if o >= 0 and start + o > self._opener:
            self._opener = start + o
        if t < 0:
            return None
        return self._found(start + t + len(trigger))

    def close(self, finish_reason: str | None = "stop") -> Opening | None:
        """The stream ended. A normal end ("stop", or None: unknown) inside an open
        item list is the server stopping at the trigger: that block."""
        if self.closed:
            return self.block
        self.closed = True
        if self.block is None and self._opener >= 0 and finish_reason in ("stop", None):
            # A server may let a piece of the stop string through before it stops
            # (llama-cpp-python's stream does): it is the trigger's start, not text.
            keep = self._len - partial_tail(self._tail(max(0, self._len - self._overlap)),
                                            self.fork.trigger)
            return self._found(keep + len(self.fork.trigger))
        return self.block

    def _found(self, end: int) -> Opening:
        whole = "".join(self._parts)
        body_end = end - len(self.fork.trigger)
        body = whole[max(self._opener, 0): body_end]
        self._parts = [whole]
        self.block = Opening(self._opener, end, tuple(self.fork.items(body)))
        return self.block

    def _tail(self, start: int) -> str:
        # Join only the parts that reach back to `start` (a few: deltas are small).
        need = self._len - start
        got: list[str] = []
        n = 0
        for part in reversed(self._parts):
            got.append(part)
            n += len(part)
            if n >= need:
                break
        joined = "".join(reversed(got))
        return joined[len(joined) - need:]


def partial_tail(text: str, tag: str) -> int:
    """How many of `text`'s last characters are a proper start of `tag` (0: none)."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


def parse(fork: ForkFormat, text: str, finish_reason: str | None = "stop") -> ForkParser:
    """A whole segment's text at once (a replayed call): the same as streamed."""
    parser = ForkParser(fork)
    parser.feed(text)
    parser.close(finish_reason)
    return parser
