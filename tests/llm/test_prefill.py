"""`prefill=`: an assistant prefix the model continues, through every backend.

The reply is only the continuation. The simulated model's script sees the
prefix (a rule's "prefill" regex, a script function's `prefill` argument), so a
scripted trajectory can answer a parent, its threads and the continuation
after their join. Over HTTP the prefix is a trailing assistant message, plus
`continue_final_message` for the dialects that take it (vLLM, SGLang); a
dialect whose API cannot continue (OpenAI's) refuses before any call, naming
the fallback.
"""

from __future__ import annotations

import pytest

from plait.llm import LLMOptionError, Message, OpenAILLM, SimLLM
from plait.llm._protocol import approx_tokens, build_request
from plait.llm._sim import count_tokens

FAST = {"ttft": 0.0, "tps": 10_000.0}
Q = [Message("user", "What is 2+3? Think in parallel.")]
# A fork/join trajectory, scripted by what the model has written so far.
SCRIPT = [
    {"prefill": r"<Thread>\n1:$", "reply": " 2 is two.\n</Thread>"},
    {"prefill": r"<Thread>\n2:$", "reply": " 3 is three.\n</Thread>"},
    {"prefill": r"</Parallel>\n$", "reply": "So the sum is 5."},
    {"reply": "<Parallel>\n<Outlines>1: two 2: three</Outlines>"},
]


def test_build_request_takes_a_prefix() -> None:
    assert build_request(Q, prefill="Let me").prefill == "Let me"
    assert build_request(Q).prefill is None
    assert build_request(Q, prefill="").prefill is None  # an empty prefix is a new turn
    with pytest.raises(LLMOptionError, match="prefill must be text"):
        build_request(Q, prefill=3)  # type: ignore[arg-type]
    with pytest.raises(LLMOptionError, match="tools or a prefill"):
        build_request(Q, prefill="x", tools=[{"name": "f", "parameters": {}}])


def test_sim_rules_answer_by_the_prefix(arun) -> None:
    llm = SimLLM(SCRIPT, **FAST)
    parent = arun(llm.complete(Q)).text
    assert parent.startswith("<Parallel>")
    t1 = arun(llm.complete(Q, prefill=parent + "\n<Thread>\n1:"))
    t2 = arun(llm.complete(Q, prefill=parent + "\n<Thread>\n2:"))
    assert (t1.text, t2.text) == (" 2 is two.\n</Thread>", " 3 is three.\n</Thread>")
    joined = parent + "\n<Thread>\n1:" + t1.text + "<Thread>\n2:" + t2.text + "\n</Parallel>\n"
    end = arun(llm.complete(Q, prefill=joined))
    assert end.text == "So the sum is 5."  # only the continuation, never the prefix
    # The prefix is prompt: counted with the messages.
    assert end.usage.prompt_tokens == count_tokens(Q[0].content) + count_tokens(joined)


def test_sim_script_functions_see_the_prefix(arun) -> None:
    seen = []

    def positional(messages, role, prefill):
        seen.append((role, prefill))
        return f"after {prefill!r}"

    def keyword(messages, *, prefill=None):
        return "kw" if prefill is None else prefill.upper()

    assert arun(SimLLM(positional, **FAST).complete(Q, prefill="ab", role="thread")).text == \
        "after 'ab'"
    assert seen == [("thread", "ab")]
    assert arun(SimLLM(keyword, **FAST).complete(Q, prefill="ab")).text == "AB"
    assert arun(SimLLM(keyword, **FAST).complete(Q)).text == "kw"
    # Older script functions, of (messages) or (messages, role), still work.
    assert arun(SimLLM(lambda m: "one", **FAST).complete(Q, prefill="x")).text == "one"
    assert arun(SimLLM(lambda m, r: r or "-", **FAST).complete(Q, prefill="x")).text == "-"


@pytest.mark.parametrize("dialect", ["llama.cpp", "vllm"])
def test_sim_server_continues_a_trailing_assistant_message(sim_server, arun, dialect) -> None:
    server = sim_server(SCRIPT, **FAST)
    llm = OpenAILLM("sim", base_url=server.base_url, api_key="sk-none", dialect=dialect)
    body = llm.body(build_request(Q, prefill="<Parallel>\n<Thread>\n2:"))
    assert body["messages"][-1] == {"role": "assistant", "content": "<Parallel>\n<Thread>\n2:"}
    assert ("continue_final_message" in body) == (dialect == "vllm")

    async def go():
        try:
            return [await llm.complete(Q, prefill="<Parallel>\n<Thread>\n2:"),
                    await llm.complete(Q, prefill="x\n</Parallel>\n"),
                    await llm.complete(Q)]
        finally:
            await llm.aclose()

    thread, end, parent = arun(go())
    assert thread.text == " 3 is three.\n</Thread>"
    assert end.text == "So the sum is 5."
    assert parent.text.startswith("<Parallel>")
    assert thread.usage.prompt_tokens == count_tokens(Q[0].content) + count_tokens(
        "<Parallel>\n<Thread>\n2:")


def test_sim_server_new_turn_when_asked(sim_server, arun) -> None:
    """`continue_final_message: false` (vLLM's default) keeps the assistant message
    as history: the script sees no prefix."""
    import httpx

    server = sim_server(SCRIPT, **FAST)
    body = {"model": "sim", "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "</Parallel>\n"}],
        "continue_final_message": False, "stream": False}
    reply = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10).json()
    assert reply["choices"][0]["message"]["content"].startswith("<Parallel>")


def test_a_dialect_that_cannot_continue_refuses_before_calling() -> None:
    llm = OpenAILLM("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", api_key="sk-none",
                    dialect="openai")
    with pytest.raises(LLMOptionError, match="cannot continue an assistant prefix.*re-prompt"):
        llm.stream(Q, prefill="Let me think")


def test_approximate_counts_include_the_prefix() -> None:
    from plait.llm._protocol import approx_prompt_tokens

    assert approx_prompt_tokens(Q, "x" * 40) == approx_prompt_tokens(Q) + approx_tokens("x" * 40)
