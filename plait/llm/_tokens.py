"""How the simulated model cuts text into tokens: `word` or `bpe`.

- ``word``: one piece of the regex ``\\s*\\S+|\\s+`` -- a word with the whitespace
  before it (trailing whitespace is a piece of its own). A plan line such as
  ``1. search("The Silent Harbor")`` is 4 tokens.
- ``bpe``: pieces of four characters (the last one shorter), so a text is
  `approx_tokens(text)` tokens, the rule of thumb for English BPE vocabularies
  (the same line is ~9). Code-like text costs what it costs a real model.

Both join back to the text exactly, so a reply streams the same characters
whichever is chosen; only the number and size of the pieces change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from plait.llm._protocol import LLMOptionError, approx_tokens

TOKEN_RE = re.compile(r"\s*\S+|\s+")
BPE_CHARS = 4  # characters a token, as `approx_tokens` counts them


def split_words(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def count_words(text: str) -> int:
    return len(TOKEN_RE.findall(text))


def split_bpe(text: str) -> list[str]:
    return [text[i : i + BPE_CHARS] for i in range(0, len(text), BPE_CHARS)]


@dataclass(frozen=True, slots=True)
class Tokens:
    """One way of cutting text: its name, its pieces, their count (== len(split))."""

    name: str
    split: Callable[[str], list[str]]
    count: Callable[[str], int]

    @classmethod
    def named(cls, name: str | Tokens) -> Tokens:
        if isinstance(name, Tokens):
            return name
        found = TOKENIZERS.get(name) if isinstance(name, str) else None
        if found is None:
            raise LLMOptionError(f"sim tokens must be one of {sorted(TOKENIZERS)}, got {name!r}")
        return found

    def cut(self, text: str, n: int) -> str:
        """The first `n` tokens of `text`."""
        return "".join(self.split(text)[:n])

    def __str__(self) -> str:
        return self.name


WORD = Tokens("word", split_words, count_words)
BPE = Tokens("bpe", split_bpe, approx_tokens)
TOKENIZERS = {t.name: t for t in (WORD, BPE)}
