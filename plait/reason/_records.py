"""What a reasoning run returns: its joined text, every segment, block and thread
with tokens and timings, and the figures read from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Segment:
    """One LLM call of a chain: a parent stretch, a continuation, or a thread's."""

    node: int
    text: str  # what it added to its context (with the trigger when it opened a block)
    tokens: int  # completion tokens
    prompt_tokens: int
    ttft: float | None
    start: float  # seconds since the reasoning started
    end: float
    finish_reason: str | None
    replayed: bool


@dataclass(frozen=True, slots=True)
class Chain:
    """A context's own calls and blocks, in order: segment, block, segment, ...
    The top level is a chain; so is every thread (a thread may fork in turn)."""

    items: tuple[Segment | Block, ...]

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(i for i in self.items if isinstance(i, Segment))

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(i for i in self.items if isinstance(i, Block))

    @property
    def tokens(self) -> int:
        """Every completion token of the chain and of the threads under it."""
        return sum(i.tokens for i in self.items)

    @property
    def path_tokens(self) -> int:
        """Completion tokens on the longest path: a block counts its longest thread."""
        return sum(i.tokens if isinstance(i, Segment) else i.path_tokens for i in self.items)

    def bound(self, ttft: float, tps: float, ttft_continue: float | None,
              first: bool) -> float:
        total = 0.0
        for item in self.items:
            if isinstance(item, Segment):
                wait = ttft if first or ttft_continue is None else ttft_continue
                total += wait + max(item.tokens - 1, 0) / tps
                first = False
            else:
                total += item.bound(ttft, tps, ttft_continue)
        return total


@dataclass(frozen=True, slots=True)
class Thread:
    """One thread of a block: its number (or spec), the text it added after its
    header (without the closing tag), and its chain of calls."""

    number: str
    text: str
    chain: Chain
    cut: bool = False  # its length bound cut it
    spec: str = ""
    # Its text as Template parts (its calls' nodes and the glue): what a join holds.
    parts: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def tokens(self) -> int:
        return self.chain.tokens

    @property
    def ttft(self) -> float | None:
        first = self.chain.segments[0] if self.chain.segments else None
        return first.ttft if first is not None else None

    @property
    def start(self) -> float:
        return self.chain.segments[0].start if self.chain.segments else 0.0

    @property
    def end(self) -> float:
        return self.chain.segments[-1].end if self.chain.segments else 0.0


@dataclass(frozen=True, slots=True)
class Block:
    """A parallel block: its item numbers, its threads (none when it was not forked)
    and what was wrong with it (`problems`: kinds from `plait.reason._parser`)."""

    depth: int
    numbers: tuple[str, ...]
    threads: tuple[Thread, ...]
    problems: tuple[str, ...] = ()

    @property
    def forked(self) -> bool:
        return bool(self.threads)

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.threads)

    @property
    def path_tokens(self) -> int:
        return max((t.chain.path_tokens for t in self.threads), default=0)

    def bound(self, ttft: float, tps: float, ttft_continue: float | None) -> float:
        # A thread's first call starts a new stream over a prefix the server holds.
        return max((t.chain.bound(ttft, tps, ttft_continue, ttft_continue is None)
                    for t in self.threads), default=0.0)


@dataclass(frozen=True, slots=True)
class Reasoning:
    """The result of `plait.reason`."""

    question: str
    text: str  # the joined trajectory (the model's text only, no prompt)
    chain: Chain
    problems: tuple[tuple[str, str], ...]  # (kind, detail) for each block not forked as written
    elapsed: float
    calls: int  # LLM calls made by this process (0: everything replayed)
    replayed: int  # LLM calls replayed from the journal
    run_id: str
    fork: str
    status: Literal["done", "cut"] = "done"  # cut: a length bound (a call's, the budget) ended it

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Every block, the nested ones after their parent block's."""
        out: list[Block] = []

        def walk(chain: Chain) -> None:
            for b in chain.blocks:
                out.append(b)
                for t in b.threads:
                    walk(t.chain)

        walk(self.chain)
        return tuple(out)

    @property
    def tokens(self) -> int:
        """Every completion token of every call."""
        return self.chain.tokens

    @property
    def critical_path_tokens(self) -> int:
        """Completion tokens on the longest path (ThreadWeaver's token latency)."""
        return self.chain.path_tokens

    def critical_path_bound(self, ttft: float, tps: float, *,
                            ttft_continue: float | None = None) -> float:
        """Seconds a perfect runtime needs on a server with this `ttft` (first call),
        `ttft_continue` (a call over a cached prefix; None: `ttft`) and `tps`: each
        call on the longest path waits its ttft and streams its tokens; a block takes
        its slowest thread."""
        return self.chain.bound(ttft, tps, ttft_continue, True)
