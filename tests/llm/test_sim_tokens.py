"""The simulated model's tokens: `word` (default) or `bpe` (~4 characters a token).

With bpe a reply streams in pieces of four characters and every count (the
reply's, the prompt's, the prefix's) is `approx_tokens` of the text, so plan
lines cost what they cost a real model; word tokens stay as they were.
"""

from __future__ import annotations

import pytest

from plait.llm import LLMOptionError, Message, OpenAILLM, SimLLM, get_llm
from plait.llm._protocol import approx_tokens
from plait.llm._sim import count_tokens
from plait.llm._tokens import BPE, WORD, Tokens

FAST = {"ttft": 0.0, "tps": 10_000.0}
LINE = '1. search("The Silent Harbor")\n'


def test_bpe_pieces_are_four_characters_and_count_as_approx_tokens() -> None:
    for text in ["", "a", "abcd", "abcde", LINE, "naïve — ünïcode ✓" * 3]:
        pieces = BPE.split(text)
        assert "".join(pieces) == text
        assert len(pieces) == BPE.count(text) == approx_tokens(text)
        assert all(len(p) == 4 for p in pieces[:-1])
    assert WORD.count(LINE) == 5 and BPE.count(LINE) == 8  # 4 words and the newline
    assert Tokens.named("bpe") is BPE
    with pytest.raises(LLMOptionError, match="tokens must be one of"):
        Tokens.named("sentencepiece")


def test_bpe_streams_and_counts(arun) -> None:
    llm = SimLLM([LINE * 3], tokens="bpe", **FAST)

    async def go():
        stream = llm.stream([Message("user", "plan it")], prefill="Plan:\n")
        return [d async for d in stream], stream.usage

    deltas, usage = arun(go())
    assert "".join(deltas) == LINE * 3 and len(deltas) == approx_tokens(LINE * 3)
    assert usage.completion_tokens == approx_tokens(LINE * 3)
    assert usage.prompt_tokens == approx_tokens("plan it") + approx_tokens("Plan:\n")
    assert llm.stats.completion_tokens == approx_tokens(LINE * 3)


def test_word_tokens_unchanged(arun) -> None:
    c = arun(SimLLM([LINE], **FAST).complete([Message("user", "plan it")]))
    assert c.usage.completion_tokens == count_tokens(LINE) == 5  # 4 words and the newline


def test_bpe_drawn_lengths_are_that_many_tokens(arun) -> None:
    llm = SimLLM(tokens="bpe", lengths="fixed:37", **FAST)
    c = arun(llm.complete([Message("user", "go")]))
    assert c.usage.completion_tokens == 37 == approx_tokens(c.text)


def test_bpe_in_spec_and_over_http(sim_server, arun) -> None:
    llm = get_llm("sim:tokens=bpe,ttft=0,tps=10000")
    assert llm.spec == "sim:tokens=bpe,ttft=0,tps=10000"
    assert llm.capacity.tokens is BPE
    with pytest.raises(LLMOptionError, match="tokens must be one of"):
        get_llm("sim:tokens=chars")
    server = sim_server([LINE], tokens="bpe", **FAST)
    http = OpenAILLM("sim", base_url=server.base_url, api_key="sk-none")

    async def go():
        try:
            stream = http.stream([Message("user", "x")])
            return [d async for d in stream], stream.usage
        finally:
            await http.aclose()

    deltas, usage = arun(go())
    assert "".join(deltas) == LINE and len(deltas) == approx_tokens(LINE)
    assert usage.completion_tokens == approx_tokens(LINE)
