"""Parallel reasoning threads (`plait.reason`) against the same tokens streamed as
one call (sequential chain-of-thought at equal tokens), on the simulated model.

    python benchmarks/reasoning.py [--tps 600] [--ttft 0.005] [--trajectories 12] [--seed 1]

Model: plait's simulated backend (`plait.llm.SimLLM`), a token is a word with the
space before it. Rates are 10x a hosted model's (default tps 600, ttft 0.005 s:
60 tokens/s and a 0.05 s time to first token over a cached prefix, ten times
faster) so the whole run takes well under a minute; every figure is a ratio, so
the scale cancels out.

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

Bound: each call on the longest path waits its ttft and streams its tokens
((n - 1) / tps after the first); a block takes its slowest thread (with
contention: streams share the decode rate while they run). plait / bound is the
runtime's own overhead; the speed-up is sequential / plait.

Targets (issue 15): plait / bound <= 1.05 on every trajectory; decomposable >= 2.2x;
ThreadWeaver-like >= 1.15x median; c = 1 within 0.9-1.0x; sequential <= 1.02x plain
streaming. Contention c = 0.1 and PDR: reported.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import plait
from plait.llm import SimLLM
from plait.llm._sim import count_tokens
from plait.reason import Reasoning, ThreadWeaver, areason
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
            outlines = "".join(f"<Outline>{n}: part{n}</Outline>\n" for n in range(1, len(item) + 1))
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
    items: list[Item] = [int(rng.lognormvariate(math.log(150), 0.5))]
    for _ in range(rng.randint(1, 3)):
        k = rng.randint(2, 4)
        items.append(tuple(max(10, int(rng.lognormvariate(math.log(90), 0.6))) for _ in range(k)))
        items.append(int(rng.lognormvariate(math.log(150), 0.5)))
    return Trajectory.of(items)


# ---------------------------------------------------------------- the bound


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


def bound(chain: Chain, ttft: float, tps: float, c: float) -> float:
    total = 0.0
    for item in chain.items:
        if isinstance(item, Segment):
            total += ttft + max(item.tokens - 1, 0) / tps
        else:
            total += _block_bound(item, ttft, tps, c)
    return total


def _block_bound(block: Block, ttft: float, tps: float, c: float) -> float:
    if not block.threads:
        return 0.0
    if all(len(t.chain.items) == 1 for t in block.threads):
        return ttft + block_time([t.tokens for t in block.threads], tps, c)
    return max(bound(t.chain, ttft, tps, c) for t in block.threads)


# ---------------------------------------------------------------- runs


async def run_reason(traj: Trajectory, ttft: float, tps: float, c: float) -> Reasoning:
    llm = SimLLM(traj.script, ttft=ttft, tps=tps, **_contention(c))
    return await areason("q", model=llm, fork=ThreadWeaver(), max_tokens=4096,
                         budget=100_000)


async def run_one_call(text: str, ttft: float, tps: float) -> float:
    llm = SimLLM(text, ttft=ttft, tps=tps)
    started = time.perf_counter()
    value = await plait.generate("q", model=llm, max_tokens=100_000)
    assert value == text
    return time.perf_counter() - started


def _contention(c: float) -> dict[str, float]:
    return {"contention": c} if c else {}


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


async def measure(suite: str, traj: Trajectory, ttft: float, tps: float, c: float = 0.0) -> Row:
    r = await run_reason(traj, ttft, tps, c)
    seq = await run_one_call(r.text, ttft, tps)
    return Row(suite, r.elapsed, seq, bound(r.chain, ttft, tps, c), r.tokens,
               r.critical_path_tokens, r.calls)


async def sequential_suite(ttft: float, tps: float, n: int) -> list[tuple[float, float]]:
    out = []
    for k in range(n):
        traj = Trajectory.of([400 + 50 * k])
        r = await run_reason(traj, ttft, tps, 0.0)
        assert not r.blocks
        plain = await run_one_call(r.text, ttft, tps)
        out.append((r.elapsed, plain))
    return out


async def pdr_vs_cot(ttft: float, tps: float) -> tuple[float, float, int]:
    """PDR (4 drafts x 1000, summary 300, refine 500) vs one call of the same tokens."""
    lengths = {"draft": 1000, "distill": 300, "refine": 500}

    def script(messages: object, role: str | None) -> str:
        return _words(lengths[role or ""], (role or "x")[:2])

    llm = SimLLM(script, ttft=ttft, tps=tps)
    started = time.perf_counter()
    result = await plait.arun(plait.pdr, "q", model=llm, drafts=4, rounds=1, distill="summary",
                              max_tokens=2000)
    elapsed = time.perf_counter() - started
    total = sum(n.extra.get("completion_tokens", 0) for n in result.nodes)
    seq = await run_one_call(_words(total, "c"), ttft, tps)
    return elapsed, seq, total


# ---------------------------------------------------------------- report


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def main(args: argparse.Namespace) -> int:
    ttft, tps = args.ttft, args.tps
    rng = random.Random(args.seed)
    rows: list[Row] = []
    # Each measurement alone: the sim's timing is exact, the event loop is not shared.
    dec = await measure("decomposable", decomposable(), ttft, tps)
    rows.append(dec)
    tw = [await measure("threadweaver-like", threadweaver_like(rng), ttft, tps)
          for _ in range(args.trajectories)]
    rows += tw
    sweep = [await measure(f"contention c={c:g}", decomposable(), ttft, tps, c)
             for c in (0.0, 0.1, 1.0)]
    rows += sweep
    seq = await sequential_suite(ttft, tps, args.sequential)
    pdr, cot, pdr_tokens = await pdr_vs_cot(ttft, tps)

    print(f"plait.reason on SimLLM (ttft {ttft:g} s, {tps:g} tokens/s, word tokens), "
          f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print(f"{'suite':22}{'plait s':>9}{'seq s':>8}{'bound s':>9}{'speed-up':>10}"
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
    overhead = c1.plait - c1.bound
    print(f"\nsequential suite: plait.reason / plain streaming, median of {len(seq)}: "
          f"{seq_ratio:.3f} ({', '.join(f'{p / q:.3f}' for p, q in seq)})")
    print(f"PDR 4x1000 + 300 + 500 ({pdr_tokens} tokens): {pdr:.3f} s vs long CoT of the same "
          f"tokens {cot:.3f} s: {cot / pdr:.2f}x")
    print(f"ThreadWeaver-like token-latency ratio (tokens / longest path), median: "
          f"{token_ratio:.2f}")
    print(f"c=1: plait {c1.plait:.3f} s vs sequential {c1.sequential:.3f} s; over the bound "
          f"{overhead * 1000:.0f} ms (3 ttfts on the path, 1 in the baseline, and the "
          f"runtime's own)\n")
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
    p.add_argument("--ttft", type=float, default=0.005)
    p.add_argument("--tps", type=float, default=600.0)
    p.add_argument("--trajectories", type=int, default=12)
    p.add_argument("--sequential", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
