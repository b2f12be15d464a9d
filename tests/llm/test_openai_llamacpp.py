"""The OpenAI-compatible backend against llama.cpp's own server (a real peer)."""

from __future__ import annotations

import json
import re

import pytest

from plait.llm import Message, OpenAILLM

from .grammars import PERSON_GBNF, PERSON_SCHEMA, YES_NO

QUESTION = [Message("system", "Answer briefly."), Message("user", "Is the sky blue?")]


def llm_for(base_url: str) -> OpenAILLM:
    return OpenAILLM("smollm2", base_url=base_url, api_key="sk-none", dialect="llama.cpp",
                     read_timeout=60)


def test_streams_real_text(llama_server, arun) -> None:
    llm = llm_for(llama_server)

    async def body():
        stream = llm.stream([Message("user", "Name three colours.")], max_tokens=16,
                            temperature=0)
        deltas = [d async for d in stream]
        await llm.aclose()
        return deltas, stream.usage

    deltas, usage = arun(body())
    assert len(deltas) > 1  # really streamed, not one block
    assert "".join(deltas).strip()
    assert 0 < usage.completion_tokens <= 20  # approximate count: this server sends no usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.ttft_s <= usage.total_s


def test_grammar_yes_no(llama_server, arun) -> None:
    c = arun(llm_for(llama_server).complete(QUESTION, grammar=YES_NO, max_tokens=4))
    assert c.text in ("yes", "no")


def test_grammar_json_object(llama_server, arun) -> None:
    c = arun(llm_for(llama_server).complete(
        [Message("user", "Describe a person as JSON with name and age.")],
        grammar=PERSON_GBNF, max_tokens=40, temperature=0))
    data = json.loads(c.text)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)
    assert re.fullmatch(r"[A-Za-z ]{1,20}", data["name"])


def test_json_schema(llama_server, arun) -> None:
    c = arun(llm_for(llama_server).complete(
        [Message("user", "Describe a person as JSON with name and age.")],
        json_schema=PERSON_SCHEMA, max_tokens=60, temperature=0))
    data = json.loads(c.text)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)


def test_stop_string(llama_server, arun) -> None:
    c = arun(llm_for(llama_server).complete(
        [Message("user", "Count from 1 to 10, separated by commas.")],
        grammar=r'root ::= "1, 2, 3, 4, 5, 6"', stop=["4"], max_tokens=20))
    assert c.text == "1, 2, 3, "


def test_prefill_is_probed_and_refused_where_the_server_starts_a_new_turn(llama_server,
                                                                         arun) -> None:
    """llama-cpp-python's server renders a trailing assistant message as a finished
    turn and opens a new one after it (its chat formatter always adds the generation
    prompt), unlike C++ llama-server: the probe sees that in the prompt's token count
    and the call is refused with the fallback named, before any text is made up."""
    from plait.llm import LLMOptionError
    from plait.llm._openai import _CONTINUES

    llm = llm_for(llama_server)

    async def body():
        try:
            with pytest.raises(LLMOptionError, match="does not continue.*re-prompt"):
                await llm.complete(QUESTION, prefill="Yes,", max_tokens=4)
            # Known from now on: refused at once, without asking the server again.
            with pytest.raises(LLMOptionError, match="does not continue"):
                await llm.complete(QUESTION, prefill="No,", max_tokens=4)
        finally:
            await llm.aclose()

    arun(body())
    assert _CONTINUES[f"{llama_server} smollm2 llama.cpp"] is False
