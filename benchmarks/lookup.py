"""Prompt-lookup decoding on the bundled model: is it worth shipping?

    python benchmarks/lookup.py [--questions 6] [--repeat 1] [--threads 1]

The planner and joiner calls `plait ask` makes for `--questions` questions of
benchmarks/quality_questions.json (bundled model, example tools) are recorded,
then each is replayed on llama.cpp directly, from a fresh cache, at temperature 0
with its grammar and max_tokens: without a draft, and with llama-cpp-python's
`LlamaPromptLookupDecoding(num_pred_tokens=k)` for k in 2 and 4 (which needs
logits for every prompt token: `logits_all`). The arms take turns per call.

Target (issue 16): ship `draft=lookup` only if median call latency improves
>= 1.15x; its agreement with the plain decode (identical text in N of M calls)
is reported either way.
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
TARGET = 1.15
KS = (2, 4)

import plait  # noqa: E402
from plait.examples import tools as example_tools  # noqa: E402
from plait.llm import LocalLLM  # noqa: E402
from plait.llm._protocol import Request  # noqa: E402
from plait.llm._local import bundled_model_path  # noqa: E402


class Recording(LocalLLM):
    """The bundled model, keeping every request it is asked."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.requests: list[Request] = []

    def _produce(self, request: Request, meter: Any) -> Any:
        self.requests.append(request)
        return super()._produce(request, meter)


async def record(n: int, threads: int) -> list[Request]:
    items = json.loads((HERE / "quality_questions.json").read_text())["questions"]
    kinds: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        kinds.setdefault(item["kind"], []).append(item)
    order = [q for group in zip(*kinds.values(), strict=False) for q in group][:n]
    llm = Recording(threads=threads)
    for item in order:
        await plait.aask(item["question"], example_tools, model=llm, timeout=900)
        print(f"  recorded: {item['question']}", file=sys.stderr)
    return [r for r in llm.requests if r.role in ("planner", "joiner")]


def replay(llama: Any, request: Request) -> tuple[str, float]:
    import llama_cpp

    llama.reset()  # a fresh cache: the same prompt work in every arm
    kwargs: dict[str, Any] = {"temperature": 0.0, "seed": 1234}
    if request.max_tokens is not None:
        kwargs["max_tokens"] = request.max_tokens
    if request.grammar is not None:
        kwargs["grammar"] = llama_cpp.LlamaGrammar.from_string(request.grammar, verbose=False)
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    started = time.perf_counter()
    reply = llama.create_chat_completion(messages, **kwargs)
    return reply["choices"][0]["message"]["content"] or "", time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--questions", type=int, default=6)
    p.add_argument("--repeat", type=int, default=1, help="timed replays per call and arm")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    print(f"load: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    requests = asyncio.run(record(args.questions, args.threads))
    path = str(bundled_model_path())
    common = {"model_path": path, "n_ctx": 2048, "verbose": False, "seed": 1234,
              "n_threads": args.threads, "n_threads_batch": args.threads}
    arms: dict[str, Any] = {"plain": llama_cpp.Llama(**common)}
    for k in KS:
        arms[f"lookup k={k}"] = llama_cpp.Llama(
            **common, logits_all=True,  # else its score buffer has n_batch rows (0.3.36)
            draft_model=LlamaPromptLookupDecoding(num_pred_tokens=k))
    times: dict[str, list[float]] = {name: [] for name in arms}
    texts: dict[str, list[str]] = {name: [] for name in arms}
    names = list(arms)
    for i, request in enumerate(requests):
        order = names[i % len(names):] + names[: i % len(names)]
        took: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.repeat):
            for name in order:
                text, seconds = replay(arms[name], request)
                took[name].append(seconds)
                if len(took[name]) == 1:
                    texts[name].append(text)
        for name in names:
            times[name].append(statistics.median(took[name]))
        print(f"  {request.role:8} " + "  ".join(f"{n} {times[n][-1]:5.2f}s" for n in names),
              file=sys.stderr)
    base = times["plain"]
    print(f"\n{len(requests)} planner/joiner calls of {args.questions} questions, temperature 0, "
          f"threads={args.threads}, median of {args.repeat} per call")
    print(f"{'arm':>12} {'median s':>9} {'speed-up':>9} {'identical text':>15}  "
          f"target >= {TARGET}x")
    ok_any = False
    for name in names:
        median = statistics.median(times[name])
        ratio = statistics.median(b / t for b, t in zip(base, times[name], strict=True))
        same = sum(a == b for a, b in zip(texts["plain"], texts[name], strict=True))
        verdict = "" if name == "plain" else ("met" if ratio >= TARGET else "MISSED")
        ok_any |= name != "plain" and ratio >= TARGET
        agree = f"{same}/{len(requests)}"
        print(f"{name:>12} {median:>9.2f} {ratio:>8.2f}x {agree:>15}  {verdict}")
    for role in ("planner", "joiner"):
        idx = [i for i, r in enumerate(requests) if r.role == role]
        if idx:
            print(f"  {role}: " + ", ".join(
                f"{n} {statistics.median(base[i] / times[n][i] for i in idx):.2f}x"
                for n in names[1:]) + f" over {len(idx)} calls")
    print(f"load now {os.getloadavg()[0]:.1f}; "
          + ("ship draft=lookup" if ok_any else "ship nothing (negative result)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
