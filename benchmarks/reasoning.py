"""Parallel reasoning threads (`plait.reason`) against the same tokens streamed as
one call (sequential chain-of-thought at equal tokens), on the simulated model.

    python benchmarks/reasoning.py [--tps 1000] [--ttft 0.003] [--pps 150000]
                                   [--trajectories 6] [--repeats 3] [--seed 1]

Model: plait's simulated backend (`plait.llm.SimLLM`), a token is a word with the
space before it. Rates are a hosted model's sped up ~17x (default tps 1000, ttft
0.003 s, pps 150,000: 60 tokens/s, 0.05 s to the first token over a cached
prefix and 9,000 prompt tokens/s prefill, 1000/60 times faster) so the whole run
takes about a minute and a half; every figure is a ratio, so the scale cancels
out. Faster rates cost more CPU per second (every token is a streamed delta), so
on a busy machine the runtime falls behind the sim's clock: 1000 tokens/s is a
compromise. Each time is the median of `--repeats` runs. The
sim's prefix cache holds every prompt and what was written after it, so a thread
pays only its header and a join re-prefills threads 2..k (as over an API).

Trajectories are scripted in ThreadWeaver's format: the sim answers each call from
its prefill (the parent's context): the trajectory's own calls by how many blocks
the context has closed, a thread by its block and its `<Thread>\\n{n}:` header.
The baseline streams the joined text `plait.reason` produced, as one
`plait.generate` call of the same model: the same tokens, no threads.

Suites:
- decomposable: S0=200, 4 threads x 300, S1=100 (ideal 1500/600 = 2.5x).
- ThreadWeaver-like: 1-3 blocks of 2-4 threads, lengths log-normal, sized so the
  suite's token-latency ratio is ~1.2 (ThreadWeaver: 1.22x average).
- contention sweep on the decomposable trajectory: c = 0, 0.1, 1 (per-token
  interval x (1 + c (streams - 1)); c = 1 is one decode stream, like the bundled
  model); the bound follows the same law.
- sequential: no blocks, plait.reason against plain streaming (the parser's cost).
- PDR (M=4 drafts of 1000, summary 300, refine 500, one round) against long CoT
  of the same total tokens.

Bound: each call on the longest path waits its ttft, prefills its prompt tokens
not in the cache (/ pps) and streams its tokens ((n - 1) / tps after the first);
a block takes its slowest thread (with contention: streams share the decode rate
while they run). plait / bound is the
runtime's own overhead; the speed-up is sequential / plait.

Targets (issue 15): plait / bound <= 1.05 on every trajectory; decomposable >= 2.2x;
ThreadWeaver-like >= 1.15x median; c = 1 within 0.9-1.0x; sequential <= 1.02x plain
streaming. Contention c = 0.1 and PDR: reported.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import math
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import plait
from plait.llm import SimLLM
from plait.llm._sim import count_tokens
from plait.reason import ForkFormat, Reasoning, Thread, ThreadWeaver, areason
from plait.reason._formats import Thread as Joined
from plait.reason._records import Block, Chain, Segment

Item = int | tuple[int, ...]  # a sequential stretch of n tokens, or a block's thread lengths
HEADER = re.compile(r"<Thread>\n(\d+):$")


# ---------------------------------------------------------------- trajectories


def _words(n: int, tag: str) -> str:
    return "".join(f" {tag}{i}" for i in range(max(n, 0)))


@dataclass(frozen=True)
class Trajectory:
    """A scripted trajectory: segment k's text (with the block it opens) and block
    k's thread texts; `items` as drawn."""

    items: tuple[Item, ...]
    segments: tuple[str, ...]
    threads: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, items: Sequence[Item]) -> Trajectory:
        segments: list[str] = []
        threads: list[tuple[str, ...]] = []
        text = ""
        for k, item in enumerate(items):
            if isinstance(item, int):
                lead = "</Parallel>\n" if threads and not text else ""
                text += lead + _words(item - count_tokens(lead), f"s{k}w")
                continue
            outlines = "".join(f"<Outline>{n}: part{n}</Outline>\n"
                               for n in range(1, len(item) + 1))
            block = f"\n<Parallel>\n<Outlines>\n{outlines}</Outlines>"
            segments.append(text + block)
            threads.append(tuple(_words(n, f"b{k}t{j}w") + "\n" for j, n in enumerate(item, 1)))
            text = ""
        if text or not segments or isinstance(items[-1], tuple):
            segments.append(text or "</Parallel>\ndone")
        return cls(tuple(items), tuple(segments), tuple(threads))

    def script(self, messages: object, role: str | None, prefill: str | None) -> str:
        context = prefill or ""
        closed = context.count("</Outlines>")
        if role == "thread":
            m = HEADER.search(context)
            assert m is not None, context[-40:]
            return self.threads[closed - 1][int(m.group(1)) - 1] + "</Thread>"
        assert role == "reason", role
        return self.segments[closed]


def decomposable() -> Trajectory:
    return Trajectory.of([200, (300, 300, 300, 300), 100])


def threadweaver_like(rng: random.Random) -> Trajectory:
    """1-3 blocks of 2-4 threads; stretch and thread lengths log-normal, ~1-2k tokens."""
    items: list[Item] = [int(rng.lognormvariate(math.log(250), 0.5))]
    for _ in range(rng.randint(1, 3)):
        k = rng.randint(2, 4)
        items.append(tuple(max(10, int(rng.lognormvariate(math.log(60), 0.6))) for _ in range(k)))
        items.append(int(rng.lognormvariate(math.log(250), 0.5)))
    return Trajectory.of(items)


# ---------------------------------------------------------------- the bound


@dataclass(frozen=True)
class Sim:
    """The simulated server's timing."""

    ttft: float
    tps: float
    pps: float | None = None
    c: float = 0.0

    def llm(self, script: object) -> SimLLM:
        knobs: dict[str, float] = {}
        if self.pps is not None:
            knobs["pps"] = self.pps
        if self.c:
            knobs["contention"] = self.c
        return SimLLM(script, ttft=self.ttft, tps=self.tps, **knobs)

    def prefill(self, tokens: int) -> float:
        return tokens / self.pps if self.pps is not None else 0.0


def block_time(lengths: Sequence[int], tps: float, c: float) -> float:
    """Decode time of threads that start together and share the decode rate: while
    s streams run, each gets tps / (1 + c (s - 1)) tokens/s."""
    left = sorted(max(n - 1, 0) for n in lengths)
    t, done = 0.0, 0.0
    for i, n in enumerate(left):
        s = len(left) - i
        t += (n - done) * (1 + c * (s - 1)) / tps
        done = n
    return t


def bound(chain: Chain, sim: Sim, fork: ForkFormat | None = None) -> float:
    """The longest path of a flat ThreadWeaver trajectory (blocks of one-call threads)."""
    fork = fork or ThreadWeaver()
    total = 0.0
    after: Block | None = None  # the block the next call continues after
    for item in chain.items:
        if isinstance(item, Segment):
            # A continuation re-reads the join past what thread 1's call left cached.
            uncached = 0
            if after is not None and after.threads:
                first = after.threads[0]
                joined = fork.appended([_joined(t) for t in after.threads])
                uncached = count_tokens(joined) - count_tokens(
                    fork.thread_header(first.number) + first.text)
            total += sim.ttft + sim.prefill(max(uncached, 0)) + max(item.tokens - 1, 0) / sim.tps
            after = None
        else:
            headers = max(count_tokens(fork.thread_header(t.number)) for t in item.threads) \
                if item.threads else 0
            if item.threads:
                total += sim.ttft + sim.prefill(headers) + block_time(
                    [t.tokens for t in item.threads], sim.tps, sim.c)
            after = item
    return total


def _joined(t: Thread) -> Joined:
    return Joined(t.number, t.text, t.cut)


# ---------------------------------------------------------------- runs


async def run_reason(traj: Trajectory, sim: Sim) -> Reasoning:
    return await areason("q", model=sim.llm(traj.script), fork=ThreadWeaver(), max_tokens=4096,
                         budget=100_000)


async def run_one_call(text: str, sim: Sim) -> float:
    """The same tokens streamed as one call (the sim's timing without contention:
    one stream is alone either way)."""
    started = time.perf_counter()
    value = await plait.generate("q", model=sim.llm(text), max_tokens=100_000)
    assert value == text
    return time.perf_counter() - started


@dataclass
class Row:
    suite: str
    plait: float
    sequential: float
    bound: float
    tokens: int
    path_tokens: int
    calls: int

    @property
    def speedup(self) -> float:
        return self.sequential / self.plait

    @property
    def over_bound(self) -> float:
        return self.plait / self.bound


REPEATS = 3


async def measure(suite: str, traj: Trajectory, sim: Sim) -> Row:
    """Median of REPEATS runs of plait.reason and of the one-call baseline, alternated."""
    runs: list[Reasoning] = []
    seqs: list[float] = []
    for _ in range(REPEATS):
        runs.append(await run_reason(traj, sim))
        seqs.append(await run_one_call(runs[-1].text, sim))
    r = sorted(runs, key=lambda x: x.elapsed)[len(runs) // 2]
    assert all(x.text == r.text for x in runs)
    return Row(suite, r.elapsed, statistics.median(seqs), bound(r.chain, sim), r.tokens,
               r.critical_path_tokens, r.calls)


async def sequential_suite(sim: Sim, n: int) -> list[tuple[float, float]]:
    out = []
    for k in range(n):
        row = await measure("sequential", Trajectory.of([400 + 50 * k]), sim)
        assert row.calls == 1
        out.append((row.plait, row.sequential))
    return out


async def pdr_vs_cot(sim: Sim) -> tuple[float, float, int]:
    """PDR (4 drafts x 1000, summary 300, refine 500) vs one call of the same tokens."""
    lengths = {"draft": 1000, "distill": 300, "refine": 500}

    def script(messages: object, role: str | None) -> str:
        return _words(lengths[role or ""], (role or "x")[:2])

    started = time.perf_counter()
    result = await plait.arun(plait.pdr, "q", model=sim.llm(script), drafts=4, rounds=1,
                              distill="summary", max_tokens=2000)
    elapsed = time.perf_counter() - started
    total = sum(n.extra.get("completion_tokens", 0) for n in result.nodes)
    seq = await run_one_call(_words(total, "c"), sim)
    return elapsed, seq, total


# ---------------------------------------------------------------- report


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def main(args: argparse.Namespace) -> int:
    knobs = inspect.signature(SimLLM).parameters
    if "pps" not in knobs or "contention" not in knobs:
        print("this benchmark needs the sim's pps (prefill with a prefix cache) and "
              "contention knobs: SimLLM(pps=, contention=)", file=sys.stderr)
        return 2
    global REPEATS
    REPEATS = args.repeats
    sim = Sim(args.ttft, args.tps, args.pps)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    rows: list[Row] = []
    await measure("warm-up", Trajectory.of([20, (20, 20), 20]), sim)  # first-call costs
    # Each measurement alone: the sim's timing is exact, the event loop is not shared.
    dec = await measure("decomposable", decomposable(), sim)
    rows.append(dec)
    tw = [await measure("threadweaver-like", threadweaver_like(rng), sim)
          for _ in range(args.trajectories)]
    rows += tw
    sweep = [dec] + [await measure(f"contention c={c:g}", decomposable(),
                                   Sim(sim.ttft, sim.tps, sim.pps, c)) for c in (0.1, 1.0)]
    rows += sweep[1:]  # c = 0 is the decomposable row
    seq = await sequential_suite(sim, args.sequential)
    pdr, cot, pdr_tokens = await pdr_vs_cot(sim)

    print(f"plait.reason on SimLLM (ttft {sim.ttft:g} s, {sim.tps:g} tokens/s, pps "
          f"{sim.pps:g} with a prefix cache, word tokens); medians of {REPEATS} runs; load "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{time.perf_counter() - started:.0f} s\n")
    print(f"contention c=0 is the decomposable row.\n{'suite':22}{'plait s':>9}{'seq s':>8}{'bound s':>9}{'speed-up':>10}"
          f"{'ideal':>7}{'plait/bound':>13}{'tokens':>8}{'path':>6}{'calls':>6}")
    for r in rows:
        ideal = r.sequential / r.bound
        print(f"{r.suite:22}{r.plait:9.3f}{r.sequential:8.3f}{r.bound:9.3f}{r.speedup:9.2f}x"
              f"{ideal:6.2f}x{r.over_bound:12.3f}{r.tokens:8}{r.path_tokens:6}{r.calls:6}")
    token_ratio = statistics.median(r.tokens / r.path_tokens for r in tw)
    tw_median = statistics.median(r.speedup for r in tw)
    worst = max(r.over_bound for r in rows)
    seq_ratio = statistics.median(p / q for p, q in seq)
    c1 = sweep[2]
    print(f"\nsequential suite: plait.reason / plain streaming, median of {len(seq)}: "
          f"{seq_ratio:.3f} ({', '.join(f'{p / q:.3f}' for p, q in seq)})")
    print(f"PDR 4x1000 + 300 + 500 ({pdr_tokens} tokens): {pdr:.3f} s vs long CoT of the same "
          f"tokens {cot:.3f} s: {cot / pdr:.2f}x (ideal {pdr_tokens / 1800:.2f}x)")
    print(f"ThreadWeaver-like token-latency ratio (tokens / longest path), median "
          f"{token_ratio:.2f}; wall-clock speed-up median {tw_median:.2f}x")
    print(f"c=1: plait {c1.plait:.3f} s vs sequential {c1.sequential:.3f} s; overhead "
          f"{(c1.plait - c1.sequential) * 1000:.0f} ms (two more calls on the path: their "
          f"ttft, the join's re-prefill, the runtime)\n")
    targets = [
        (f"plait / bound <= 1.05 on every trajectory (worst {worst:.3f})", worst <= 1.05),
        (f"decomposable >= 2.2x (got {dec.speedup:.2f}x)", dec.speedup >= 2.2),
        (f"ThreadWeaver-like >= 1.15x median (got {tw_median:.2f}x)", tw_median >= 1.15),
        (f"c=1 within 0.9-1.0x (got {c1.speedup:.2f}x)", 0.9 <= c1.speedup <= 1.0),
        (f"sequential <= 1.02x plain streaming (got {seq_ratio:.3f})", seq_ratio <= 1.02),
    ]
    for text, ok in targets:
        print(f"  [{_mark(ok)}] {text}")
    print(f"  [report] contention c=0.1: {sweep[1].speedup:.2f}x; PDR vs long CoT "
          f"{cot / pdr:.2f}x")
    return 0 if all(ok for _, ok in targets) else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ttft", type=float, default=0.003)
    p.add_argument("--tps", type=float, default=1000.0)
    p.add_argument("--pps", type=float, default=150_000.0)
    p.add_argument("--trajectories", type=int, default=6)
    p.add_argument("--sequential", type=int, default=3)
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
