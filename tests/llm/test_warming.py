"""Canonical-chunk prompt evaluation and warming on the bundled model: a call's
text is the same byte for byte whether its prompt was evaluated cold, warmed
beforehand, or repeated. (The 200-call sample is benchmarks/warming.py; this is a
smaller one, kept cheap for the suite.)"""

from __future__ import annotations

import asyncio

import pytest

from plait.llm import Message, get_llm
from plait.llm._chunks import CHUNK
from plait.llm._protocol import build_request

from .warm_sample import sample


def _loaded(llm):
    from plait.llm._local import _load

    return _load(str(llm.model_path), llm.n_ctx, llm.seed, llm.threads)


@pytest.mark.timeout(240)
def test_warmed_equals_cold_byte_for_byte(gguf_path, arun) -> None:
    """On one thread: on a loaded 2-core machine two threads spin against each other
    (~10x slower); benchmarks/warming.py checks both thread counts."""
    llm = get_llm("local:threads=1")
    chunks = _loaded(llm).chunks
    cases = sample(10, examples=False)

    async def body() -> list[tuple[str, str, str, int]]:
        out = []
        for case in cases:
            options = {"max_tokens": 8, "temperature": case.temperature}
            chunks.full = 0  # forget the cache: evaluated from the first token
            cold = await llm.complete(case.messages, **options)
            assert chunks.reused == 0
            repeat = await llm.complete(case.messages, **options)  # the cache holds it all
            chunks.full = 0
            await llm.warm(build_request(case.known))
            warmed = await llm.complete(case.messages, **options)
            assert chunks.reused == chunks.warmed  # what was warmed, and only that, was kept
            out.append((cold.text, repeat.text, warmed.text, chunks.warmed))
        return out

    results = arun(body(), timeout=220)
    for cold, repeat, warmed, _ in results:
        assert warmed == cold and repeat == cold
    assert any(n >= CHUNK for *_, n in results)  # some calls did start warm
    assert len({cold for cold, *_ in results}) > 1  # the calls differ


def test_a_call_preempts_warming(gguf_path, arun) -> None:
    """A call that arrives while a long prompt is warmed stops it (mid-chunk) and
    runs; warming never starts while a call holds the model."""
    llm = get_llm("local:threads=1")
    chunks = _loaded(llm).chunks
    long = [Message("user", " ".join(f"item {i} is {i * 7 % 13}" for i in range(600)))]
    ask = [Message("user", "Name a colour.")]

    async def body() -> tuple[int, int, str, str]:
        chunks.full = 0
        warming = asyncio.create_task(llm.warm(build_request(long)))
        while chunks.warmed == 0:  # it has the model
            await asyncio.sleep(0.01)
        reply = await llm.complete(ask, max_tokens=4, temperature=0)
        await warming  # it ended on its own: the call took the model
        stopped_at = chunks.warmed
        chunks.full = 0
        alone = await llm.complete(ask, max_tokens=4, temperature=0)
        return stopped_at, len(llm_tokens(long)), reply.text, alone.text

    def llm_tokens(messages):
        return _loaded(llm).prompt([{"role": m.role, "content": m.content} for m in messages],
                                   True)

    stopped_at, total, reply, alone = arun(body(), timeout=120)
    assert 0 < stopped_at < total // CHUNK * CHUNK  # it stopped before the end
    assert reply == alone


def test_cancelled_warming_leaves_the_model_exact(gguf_path, arun) -> None:
    llm = get_llm("local:threads=1")
    chunks = _loaded(llm).chunks
    case = sample(1, examples=False)[0]

    async def body() -> tuple[str, str]:
        chunks.full = 0
        cold = await llm.complete(case.messages, max_tokens=6)
        chunks.full = 0
        warming = asyncio.create_task(llm.warm(build_request(case.messages)))
        while chunks.warmed == 0:
            await asyncio.sleep(0.005)
        warming.cancel()
        with pytest.raises(asyncio.CancelledError):
            await warming
        after = await llm.complete(case.messages, max_tokens=6)
        return cold.text, after.text

    cold, after = arun(body(), timeout=120)
    assert after == cold


def test_other_backends_ignore_warm(arun) -> None:
    llm = get_llm("sim")
    assert arun(llm.warm(build_request([Message("user", "hi")]))) is None
