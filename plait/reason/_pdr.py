"""Parallel-Distill-Refine (arXiv 2510.01123) as a plain workflow of `plait.generate`
calls: M drafts at once -> a bounded workspace distilled from them -> a refined
answer; repeated `rounds` times. No format, no training: any model.

    answer = plait.run(plait.pdr, question, model="sim", drafts=4, rounds=2).value

Distill modes are PDR's three: "summary" (the model summarises the drafts),
"top_k" (the k drafts most others agree with: their last lines compared) and
"random_k" (k drafts drawn with a seeded generator).
"""

from __future__ import annotations

import random
from typing import Any

from plait.runtime._graph import Template
from plait.generate import generate

DISTILL = ("summary", "top_k", "random_k")


async def pdr(question: str, *, model: Any = None, drafts: int = 4, rounds: int = 2,
              distill: str = "summary", k: int = 2, max_tokens: int | None = None,
              temperature: float = 0.8, seed: int = 0) -> str:
    """Parallel-Distill-Refine; a workflow: `plait.run(plait.pdr, question, model=...)`."""
    if distill not in DISTILL or not (1 <= k <= drafts) or drafts < 1 or rounds < 1:
        raise ValueError(f"pdr: distill is one of {DISTILL}, 1 <= k <= drafts, rounds >= 1")
    answer: Any = ""
    for r in range(rounds):
        ask = _text((f"Question: {question}\nEarlier answer and notes: ", answer,
                        "\nWrite a draft solution."))
        ds = [generate(ask, model=model, temperature=temperature, seed=seed + r * drafts + i,
                       max_tokens=max_tokens, name="draft") for i in range(drafts)]  # at once
        if distill == "summary":
            parts: list[Any] = [f"Question: {question}\nSummarize what these drafts agree "
                                f"on and where they differ:"]
            for i, d in enumerate(ds):
                parts += [f"\n--- draft {i + 1}\n", d]
            notes: Any = generate(_text(parts), model=model, max_tokens=max_tokens,
                                  name="distill")
        else:
            texts = [await d for d in ds]
            if distill == "top_k":
                last = [t.strip().rsplit("\n", 1)[-1] for t in texts]
                picked = sorted(range(drafts), key=lambda i: (-last.count(last[i]), i))[:k]
            else:
                picked = sorted(random.Random(seed + r).sample(range(drafts), k))
            notes = "\n---\n".join(texts[i] for i in picked)
        answer = await generate(_text((f"Question: {question}\nNotes from drafts:\n", notes,
                                          "\nWrite the final, refined solution.")),
                                model=model, max_tokens=max_tokens, name="refine")
    return answer


def _text(parts: Any) -> Any:
    """A prompt of literal text and earlier calls' Refs: a Template when it has Refs."""
    parts = tuple(parts)
    return Template(parts) if any(not isinstance(p, str) for p in parts) else "".join(parts)
