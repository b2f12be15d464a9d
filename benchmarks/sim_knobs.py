"""The simulated model's knobs behave as configured: prefix cache, contention, BPE tokens.

Three tables, each measured in this run, each row marked met / MISSED:

1. Prefix cache (`pps`): a parent call, then k threads continuing its prompt and
   reply (the fork/join pattern), in-process and over HTTP (`plait sim-server`
   as a separate process). A thread should pay prefill only for its header:
   the sim's own accounting (prefill tokens paid) must equal the header tokens
   in-process (the threads start in one turn of the loop, so none finds another's
   header cached yet); over HTTP they arrive one by one, and a later thread may
   find the earlier one's "\n<Thread>" read: at most the headers there. And the threads' median ttft in-process must be within 10% (or
   5 ms) of `ttft + header / pps`; the saving is against the same prompt uncached
   (over HTTP the ttft includes the round trip: shown, not judged).
2. Contention `c`: n streams of L tokens started together; the measured
   per-token interval over the solo one must be within 10% of `1 + c (n - 1)`.
3. BPE tokens: the same code-like plan lines streamed with word and bpe tokens;
   bpe must count exactly `approx_tokens` (ceil(chars / 4)) and stream in
   (tokens - 1) / tps (within 10%).

    python benchmarks/sim_knobs.py [--repeat 3]

Wall-clock figures on a busy machine run late, never early: the sim's
deadlines are absolute, so a late wake-up is caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import httpx

from plait.llm import LLM, Message, OpenAILLM, SimLLM
from plait.llm._protocol import approx_tokens
from plait.llm._sim import count_tokens

QUESTION = [Message("system", "You reason in parallel when it helps. " * 8),
            Message("user", "Evaluate sin(arcsin 0.4 + arcsin 0.5) * sin(arcsin 0.5 - arcsin 0.4).")]
PARENT = ("Let me expand both factors. " * 20) + "\n<Parallel>\n<Outlines>\n" + "".join(
    f"<Outline>{k}: part {k}</Outline>\n" for k in range(1, 5)) + "</Outlines>"
THREAD = " work on this part. " * 10 + "\n</Thread>"
HEADER = "\n<Thread>\n{k}:"
PLAN = "".join(f'{i}. search("The Silent Harbor {i}")\n' for i in range(1, 9))


def row(cells: Sequence[object], widths: Sequence[int]) -> str:
    return "  ".join(str(c).rjust(w) for c, w in zip(cells, widths))


def table(head: Sequence[str], widths: Sequence[int]) -> None:
    print(row(head, widths))
    print(row(["-" * w for w in widths], widths))


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def script() -> list[dict[str, str]]:
    return [{"prefill": r"<Thread>\n\d+:$", "reply": THREAD}, {"reply": PARENT}]


@contextlib.contextmanager
def server_process(*flags: str) -> Iterator[str]:
    """`plait sim-server` in a process of its own, scripted for the fork."""
    import json
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(script(), f)
    code = ("import sys; import plait.cli.sim; from plait.cli._app import app; "
            "app(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, "sim-server", "--script", f.name,
                             "--port", str(port), *flags], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sim server did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


async def fork(llm: LLM, question: list[Message], k: int) -> list[float]:
    """A parent call, then k threads continuing its prompt and reply: their ttfts."""
    parent = await llm.complete(question)
    threads = await asyncio.gather(*(
        llm.complete(question, prefill=parent.text + HEADER.format(k=i))
        for i in range(1, k + 1)))
    return [t.usage.ttft_s for t in threads]


def header_tokens(tokens: str, k: int) -> int:
    """What thread k pays: its header's tokens past the parent's reply (bpe: with
    the 4-character piece that straddles the reply's end)."""
    header = HEADER.format(k=k)
    if tokens == "word":
        return count_tokens(PARENT + header) - count_tokens(PARENT)
    return -(-(len(PARENT) % 4 + len(header)) // 4)


async def prefix_cache(repeat: int, pps: float, ttft: float, k: int, tokens: str) -> None:
    tok = approx_tokens if tokens == "bpe" else count_tokens
    widths = [8, 4, 3, 7, 5, 9, 9, 9, 7, 7]
    in_proc: list[float] = []
    print(f"\n1. prefix cache: a parent, then {k} threads continuing it (pps={pps:g}, "
          f"ttft={ttft}, tokens={tokens})")
    table(["backend", "run", "k", "prompt", "paid", "ttft exp", "ttft med", "uncached",
           "saving", "target"], widths)
    flags = ["--ttft", str(ttft), "--tps", "2000", "--pps", str(pps), "--tokens", tokens]
    with server_process(*flags) as base:
        stats_url = base.removesuffix("/v1") + "/stats"
        http = OpenAILLM("sim", base_url=base, api_key="sk-none")
        await http.complete(QUESTION, prefill="probe")  # the once-per-server probe
        for name in ("in-proc", "http"):
            for run in range(repeat):
                # A question of its own each run: nothing is cached from an earlier one.
                question = [Message("system", f"({name} {run}) {QUESTION[0].content}"),
                            QUESTION[1]]
                if name == "in-proc":
                    llm: LLM = SimLLM(script(), ttft=ttft, tps=2000, pps=pps, tokens=tokens)
                    before = 0
                else:
                    llm = http
                    before = httpx.get(stats_url).json()["prefill_tokens"]
                ttfts = await fork(llm, question, k)
                after = (llm.stats.prefill_tokens if isinstance(llm, SimLLM)
                         else httpx.get(stats_url).json()["prefill_tokens"])
                asked = sum(tok(m.content) for m in question)  # the parent pays it all
                paid = after - before - asked
                headers = [header_tokens(tokens, i) for i in range(1, k + 1)]
                prompt = asked + tok(PARENT + HEADER.format(k=1))  # a thread's prompt
                expected = ttft + statistics.mean(headers) / pps
                measured = statistics.median(ttfts)
                uncached = ttft + prompt / pps
                if name == "in-proc":
                    in_proc += ttfts
                print(row([name, run, k, prompt, paid, f"{expected:.4f}", f"{measured:.4f}",
                           f"{uncached:.4f}", f"{uncached / measured:.1f}x",
                           verdict(paid == sum(headers) if name == "in-proc"
                                   else 0 < paid <= sum(headers))], widths))
        await http.aclose()
    # Time, in-process (over HTTP the round trip adds its own ms): the median thread.
    measured = statistics.median(in_proc)
    ok = abs(measured - expected) <= max(0.1 * expected, 0.005)
    print(f"in-process thread ttft, median of {len(in_proc)}: {measured:.4f} s vs "
          f"{expected:.4f} s expected (uncached {uncached:.4f} s): {verdict(ok)}")


async def contention(repeat: int, tps: float, length: int) -> None:
    reply = " ".join(["tok"] * length)
    widths = [5, 3, 9, 9, 7, 7]
    print(f"\n2. contention: n streams of {length} tokens at {tps:g} tokens/s, started "
          "together (interval = per-token time / solo)")
    table(["c", "n", "expected", "measured", "ratio", "target"], widths)
    for c in (0.0, 0.1, 0.5, 1.0):
        for n in (1, 2, 4, 8):
            llm = SimLLM(reply, ttft=0.0, tps=tps, contention=c)
            intervals = []
            for _ in range(repeat):
                done = await asyncio.gather(*(llm.complete([Message("user", "go")])
                                              for _ in range(n)))
                intervals += [(u.usage.total_s - u.usage.ttft_s) / (length - 1) * tps
                              for u in done]
            expected = 1 + c * (n - 1)
            measured = statistics.median(intervals)
            print(row([f"{c:g}", n, f"{expected:.2f}", f"{measured:.3f}",
                       f"{measured / expected:.3f}",
                       verdict(abs(measured / expected - 1) <= 0.10)], widths))


async def bpe(repeat: int, tps: float) -> None:
    widths = [6, 7, 7, 9, 9, 7]
    print(f"\n3. tokens: {PLAN.count(chr(10))} plan lines ({len(PLAN)} characters) at "
          f"{tps:g} tokens/s")
    table(["tokens", "count", "approx", "stream exp", "stream med", "target"], widths)
    for kind in ("word", "bpe"):
        llm = SimLLM(PLAN, ttft=0.0, tps=tps, tokens=kind)
        times = []
        count = 0
        for _ in range(repeat):
            c = await llm.complete([Message("user", "plan")])
            count = c.usage.completion_tokens
            times.append(c.usage.total_s - c.usage.ttft_s)
        expected = (count - 1) / tps
        measured = statistics.median(times)
        ok = abs(measured - expected) <= 0.1 * expected and (
            kind == "word" or count == approx_tokens(PLAN))
        print(row([kind, count, approx_tokens(PLAN), f"{expected:.3f}", f"{measured:.3f}",
                   verdict(ok)], widths))


async def main(repeat: int) -> None:
    await prefix_cache(repeat, pps=4000, ttft=0.02, k=4, tokens="word")
    await prefix_cache(repeat, pps=4000, ttft=0.02, k=4, tokens="bpe")
    await contention(repeat, tps=400, length=41)
    await bpe(repeat, tps=400)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args().repeat))
