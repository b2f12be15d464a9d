"""Canonical-chunk prompt evaluation for an in-process llama.cpp model.

A prompt's KV entries are computed in chunks of CHUNK tokens whose boundaries
are multiples of CHUNK counted from the start of the sequence: a function of
the token sequence alone, never of what happened to be cached. KV is reused
only up to the last boundary at or below the common prefix with what the cache
holds in full chunks, and the prompt's final chunk (partial or not) is always
evaluated fresh, its last row giving the first token's logits. So a call runs
the same kernels on the same shapes, with the same thread counts, whether its
prefix was cached, warmed, or evaluated just now: its logits, and its text at
any temperature under a fixed seed, are the same bit for bit (checked by
tests/llm/test_warming.py; it rests on ggml's CPU kernels being deterministic
for equal shapes). llama_cpp's own reuse is not: it reuses any common prefix and
evaluates the rest in one batch, so a repeated prompt ends with a one-token
batch whose logits differ from the batched ones in the last bits (f197357).

Tokens sampled after a prompt are evaluated one at a time: their KV is never
reused (a later prompt that contains them evaluates them in chunks again).

This reaches into llama_cpp.Llama: `n_tokens`, `input_ids`, `eval` (which
removes KV past `n_tokens` and evaluates in `n_batch` slices from there) and
`generate`'s own prefix match (it reuses at most `n_tokens`). Those are stable
across 0.3.x (tested on 0.3.36); pyproject pins llama-cpp-python below 0.4.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

CHUNK = 64  # tokens; also the model's n_batch and n_ubatch, so one chunk is one decode


@dataclass(slots=True)
class Chunks:
    """What the KV cache of one loaded model holds in canonical chunks. Read and
    written only by the thread holding the model's lock."""

    # Positions [0, full) were evaluated in whole canonical chunks (when
    # `llama.n_tokens` is lower, only up to that: an aborted prompt stops there).
    full: int = 0
    # What the last prompt kept of the cache, and what the last warming evaluated
    # (tokens): what tests and benchmarks read to see warming took effect.
    reused: int = 0
    warmed: int = 0

    def cached(self, llama: Any) -> int:
        return min(self.full, llama.n_tokens) // CHUNK * CHUNK


def common_prefix(cached: Any, tokens: Sequence[int]) -> int:
    import numpy as np  # llama_cpp's own dependency: this module runs only under it

    n = min(len(cached), len(tokens))
    if n == 0:
        return 0
    differ = np.flatnonzero(np.asarray(cached[:n]) != np.asarray(tokens[:n], dtype=np.intc))
    return int(differ[0]) if differ.size else n


def reusable(llama: Any, chunks: Chunks, tokens: Sequence[int], *, final: bool) -> int:
    """Tokens of `tokens` whose KV may be kept: whole cached chunks of the common
    prefix; with `final` (a prompt to sample after) never its last chunk."""
    cached = chunks.cached(llama)
    keep = common_prefix(llama.input_ids[:cached], tokens) // CHUNK * CHUNK
    if final:
        keep = min(keep, (len(tokens) - 1) // CHUNK * CHUNK)
    return keep


def install(llama: Any, chunks: Chunks) -> None:
    """Make every prompt this Llama evaluates go in canonical chunks: before
    llama_cpp's `generate` looks for a cached prefix, cut the cache to what may
    be reused (its own prefix match then stops there)."""
    generate = llama.generate

    def canonical(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
        tokens = list(tokens)
        llama.n_tokens = chunks.reused = reusable(llama, chunks, tokens, final=True)
        chunks.full = len(tokens) // CHUNK * CHUNK
        return (yield from generate(tokens, *args, **kwargs))

    llama.generate = canonical


def warm(llama: Any, chunks: Chunks, tokens: Sequence[int],
         stop: Callable[[], bool]) -> int:
    """Evaluate the whole chunks of `tokens` (a prompt's known beginning) not yet
    cached, one chunk at a time, until `stop()` says a real call wants the model.
    Returns the tokens evaluated."""
    end = len(tokens) // CHUNK * CHUNK
    start = reusable(llama, chunks, tokens, final=False)
    chunks.warmed = 0
    if start >= end or stop():
        return 0
    llama.n_tokens = start
    chunks.full = end
    while llama.n_tokens < end and not stop():
        position = llama.n_tokens
        llama.eval(tokens[position:position + CHUNK])  # removes KV past n_tokens first
        chunks.warmed += CHUNK
    return chunks.warmed
