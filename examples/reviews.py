"""A dataset job: find the complaints among product reviews, and say what broke.

    plait map examples/reviews.py:complaints examples/reviews.jsonl --out complaints.jsonl \
        --model sim:script=examples/sim_reviews.json

Each row (a review) runs this workflow as a small graph of its own: two LLM calls
that start at once, then a filter. Rows run many at a time. `--model` names the
model of the calls: here a scripted one (examples/sim_reviews.json answers by
each call's name), any other spec works the same (`local`, `openai:MODEL`).
"""

from __future__ import annotations

from typing import Literal

import pydantic

import plait


class Verdict(pydantic.BaseModel):
    sentiment: Literal["positive", "negative"]


@plait.workflow
async def complaints(row: dict) -> dict:
    verdict = plait.generate(  # a validated Verdict (JSON schema, repaired if need be)
        f"Review: {row['text']}\nIs this review positive or negative?",
        schema=Verdict, max_tokens=20, name="verdict")
    part = plait.generate(  # starts at once, beside the first call
        f"Review: {row['text']}\nIn at most five words, what part of the product is it "
        "about?", max_tokens=12, name="part")
    if (await verdict).sentiment == "positive":
        return plait.DROP  # not a complaint: left out of the output
    return {"id": row["id"], "review": row["text"], "about": (await part).strip()}
