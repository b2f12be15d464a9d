"""The workflow of the journal made by plait before migration 003 (the fixture
`fixtures/journal_001_002.db`, see `make_old_journal.py`): the migration test
resumes its runs with this same code."""

from __future__ import annotations

import collections

import plait

CALLS: collections.Counter[str] = collections.Counter()
FAIL: set[str] = set()  # words `shout` fails on


@plait.tool
async def shout(word: str) -> str:
    """The word in capitals, loudly."""
    CALLS["shout"] += 1
    if word in FAIL:
        raise RuntimeError(f"cannot shout {word}")
    return word.upper() + "!" * 300  # > 256 bytes: a blob


@plait.tool
def join(parts: list[str]) -> str:
    """The first letters of the parts, spaced."""
    CALLS["join"] += 1
    return " ".join(p[:1] for p in parts)


@plait.workflow
async def greet(words: list[str]) -> str:
    loud = [shout(w) for w in words]
    return await join(loud)
