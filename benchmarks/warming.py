"""Joiner warming on the bundled model: exact, and what it saves.

    python benchmarks/warming.py [--threads 1:200,2:40] [--examples] [--questions 8]

1. Exactness: for each THREADS:CALLS in `--threads`, CALLS grounded joiner prompts
   (tests/llm/warm_sample.py; half at temperature 0, half at 0.8 under the fixed
   seed; with `--examples`, with the worked examples, ~500 tokens, else ~140), each
   asked cold (the cache forgotten) and then warmed (`warm()` on a random beginning
   of it, as the compiler warms up to the first unfinished result): the texts must
   be equal byte for byte. Target: identical in every call.
2. Time saved: `--questions` questions of benchmarks/quality_questions.json asked
   with the bundled model and example tools (warming on): how many of the joiner's
   prompt tokens were warmed while the tools ran, and its ttft; then that joiner
   call replayed from a forgotten cache, cold and warmed up to its last result
   (what the compiler knows while the last tool runs), alternating which goes
   first: the ttft warming saves when the tools give it time. Reported, not a
   target: what it saves in `ask` depends on how long the tools take against
   prompt evaluation.

Wall clock on a shared machine is noisy: `uptime` is printed; ratios are medians
of per-question ratios, both arms measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

import plait  # noqa: E402
from plait.examples import tools as example_tools  # noqa: E402
from plait.llm import LocalLLM, get_llm  # noqa: E402
from plait.llm._local import _load  # noqa: E402
from plait.llm._protocol import build_request  # noqa: E402
from tests.llm.warm_sample import sample  # noqa: E402


def chunks_of(llm: LocalLLM) -> Any:
    return _load(str(llm.model_path), llm.n_ctx, llm.seed, llm.threads).chunks


async def exactness(threads: int, calls: int, max_tokens: int,
                    examples: bool) -> dict[str, Any]:
    llm = get_llm(f"local:threads={threads}")
    chunks = chunks_of(llm)
    rows = []
    for case in sample(calls, examples=examples):
        options = {"max_tokens": max_tokens, "temperature": case.temperature}
        chunks.full = 0
        cold = await llm.complete(case.messages, **options)
        chunks.full = 0
        await llm.warm(build_request(case.known))
        warmed = await llm.complete(case.messages, **options)
        rows.append((case.temperature, cold.text == warmed.text, chunks.reused,
                     cold.usage.prompt_tokens))
        print(f"  threads={threads} t={case.temperature} reused {chunks.reused:4d} of "
              f"{cold.usage.prompt_tokens}: {'same' if rows[-1][1] else 'DIFFERENT'} "
              f"{cold.text!r}" + ("" if rows[-1][1] else f" vs {warmed.text!r}"),
              file=sys.stderr)
    out = {"threads": threads}
    for t in (0.0, 0.8):
        mine = [r for r in rows if r[0] == t]
        out[t] = (sum(r[1] for r in mine), len(mine),
                  statistics.median(r[2] for r in mine), statistics.median(r[3] for r in mine))
    return out


class Recording(LocalLLM):
    """The bundled model, keeping every request it is asked."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.requests: list[Any] = []

    def _produce(self, request: Any, meter: Any) -> Any:
        self.requests.append(request)
        return super()._produce(request, meter)


def before_last_result(messages: list[Any]) -> list[Any]:
    """The joiner's prompt as the compiler knows it while the last result is out:
    the last message cut at the start of its last result line."""
    last = messages[-1]
    end = last.content.find("\nChoices:")
    if end < 0:  # the free joiner's prompt: results are its last lines
        end = len(last.content.rstrip())
    cut = last.content.rfind("\n", 0, end) + 1
    return [*messages[:-1], type(last)(last.role, last.content[:cut])]


async def timed(llm: LocalLLM, request: Any) -> float:
    stream = llm.stream(list(request.messages), grammar=request.grammar,
                        max_tokens=request.max_tokens, temperature=request.temperature)
    async for _ in stream:
        pass
    assert stream.usage is not None
    return stream.usage.ttft_s


async def saved(n: int, threads: int) -> list[dict[str, Any]]:
    items = json.loads((HERE / "quality_questions.json").read_text())["questions"]
    # The four kinds in turn, so a short run covers them all.
    kinds: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        kinds.setdefault(item["kind"], []).append(item)
    order = [q for group in zip(*kinds.values(), strict=False) for q in group][:n]
    llm = Recording(threads=threads)
    chunks = chunks_of(llm)
    rows = []
    for i, item in enumerate(order):
        chunks.full = 0
        answer = await plait.aask(item["question"], example_tools, model=llm, timeout=900)
        joiner = llm.requests[-1]
        call = answer.llm_calls[-1]
        if joiner.role != "joiner" or call.role != "joiner" or call.first_token_at is None:
            print(f"  (no joiner call) {item['question']}", file=sys.stderr)
            continue
        in_situ, reused = call.first_token_at - call.started_at, chunks.reused
        # The same call again, from a forgotten cache and warmed up to its last result
        # (the arms alternate, so a load that drifts treats them alike).
        ttft = {}
        for warm in ((False, True) if i % 2 == 0 else (True, False)):
            chunks.full = 0
            if warm:
                await llm.warm(build_request(before_last_result(list(joiner.messages))))
            ttft[warm] = await timed(llm, joiner)
        rows.append({"question": item["question"], "in_situ": in_situ, "reused": reused,
                     "prompt": call.prompt_tokens, "cold": ttft[False], "warm": ttft[True],
                     "warm_reused": chunks.reused if not (i % 2) else None,
                     "tools": max(((t.finished_at or 0) - (t.started_at or 0)
                                   for t in answer.tasks), default=0.0)})
        print(f"  joiner ttft in ask {in_situ:6.2f} s ({reused} of {call.prompt_tokens} "
              f"prompt tokens warmed while tools ran); replayed: cold {ttft[False]:6.2f} s, "
              f"warmed to its last result {ttft[True]:6.2f} s: {item['question']}",
              file=sys.stderr)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1:200,2:40",
                   help="THREADS:CALLS,... for the exactness check ('' to skip it)")
    p.add_argument("--examples", action="store_true", help="full-size joiner prompts")
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--ttft-threads", type=int, default=1)
    p.add_argument("--tool-latency", type=float, default=None,
                   help="seconds every example tool takes (default: theirs, 0.2-0.5 s)")
    args = p.parse_args()
    if args.tool_latency is not None:
        example_tools.LATENCY = (args.tool_latency, args.tool_latency)
    print(f"load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} on {os.cpu_count()} cores")
    started = time.perf_counter()
    exact = [asyncio.run(exactness(int(t), int(n), args.max_tokens, args.examples))
             for t, n in (part.split(":") for part in args.threads.split(",") if part)]
    rows = asyncio.run(saved(args.questions, args.ttft_threads)) if args.questions else []
    ok = True
    if exact:
        print("\nwarm == cold, byte for byte (cold: from a forgotten cache)")
        print(f"{'threads':>7} {'temp':>5} {'identical':>10} {'reused (med)':>13} "
              f"{'prompt (med)':>13}  target")
        for e in exact:
            for t in (0.0, 0.8):
                same, n, reused, prompt = e[t]
                met = same == n
                ok &= met
                print(f"{e['threads']:>7} {t:>5} {f'{same}/{n}':>10} {reused:>13.0f} "
                      f"{prompt:>13.0f}  every call: {'met' if met else 'MISSED'}")
    if rows:
        ratios = [r["cold"] / r["warm"] for r in rows]
        print(f"\njoiner ttft over {len(rows)} questions (threads={args.ttft_threads}; "
              f"tools take {statistics.median(r['tools'] for r in rows):.2f} s at the median)")
        print(f"  in ask: prompt tokens warmed while tools ran, median "
              f"{statistics.median(r['reused'] for r in rows):.0f} of "
              f"{statistics.median(r['prompt'] for r in rows):.0f}; joiner ttft median "
              f"{statistics.median(r['in_situ'] for r in rows):.2f} s")
        print(f"  replayed cold                       median "
              f"{statistics.median(r['cold'] for r in rows):6.2f} s")
        print(f"  replayed warmed up to its last result median "
              f"{statistics.median(r['warm'] for r in rows):6.2f} s")
        print(f"  cold / warmed, median of per-question ratios: {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    print(f"\n{time.perf_counter() - started:.0f} s; load now {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
