"""`plait.generate`: an LLM call is a node of the run.

Calls start at once and run concurrently; the request is the node's identity, so
a run resumed under its run id replays every finished call (the model is not
called) and identical deterministic calls are paid once; samples (temperature >
0) are distinct nodes; what a call measured is in its node's record and in the
journal. The model is the simulated backend, counting its calls; the journal a
real SQLite file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

import plait
from plait.journal import open_journal
from plait.llm import LLMTimeout, Message
from tests.generate.conftest import Counted


def test_two_calls_run_at_once() -> None:
    """Two calls of one workflow overlap: the run takes about one call's time, not two."""
    model = Counted(lambda m, r: "a short reply", ttft=0.5, tps=1000)

    @plait.workflow
    async def two() -> list[str]:
        a = plait.generate("first?", model=model)
        b = plait.generate("second?", model=model)
        return [await a, await b]

    t0 = time.perf_counter()
    result = plait.run(two)
    elapsed = time.perf_counter() - t0
    assert result.value == ["a short reply"] * 2 and model.calls == 2
    first, second = result.nodes
    assert first.tool == second.tool == "generate"
    # Each started before the other finished: they overlapped.
    assert first.started_at < second.finished_at and second.started_at < first.finished_at
    assert 0.5 <= elapsed < 1.0, elapsed  # one ttft (0.5 s); one after the other takes >= 1 s


def test_a_resumed_run_replays_every_call_unpaid(journal: str, model: Counted) -> None:
    @plait.workflow
    async def chain(topic: str) -> str:
        outline = plait.generate(f"outline {topic}", model=model)
        return await plait.generate(outline, model=model, system="Be brief.")

    first = plait.run(chain, "tides", journal=journal, run_id="r1")
    assert first.value == "re: re: outline tides" and model.calls == 2
    # The second call got the first's reply as its prompt, after the system message.
    assert [(m.role, m.content) for m in model.requests[1].messages] == [
        ("system", "Be brief."), ("user", "re: outline tides")]

    again = plait.run(chain, "tides", journal=journal, run_id="r1")
    assert again.value == first.value
    assert model.calls == 2 and again.replayed == 2  # no call was paid twice
    assert [n.extra for n in again.nodes] == [n.extra for n in first.nodes]
    assert [n.tokens for n in again.nodes] == [n.tokens for n in first.nodes]


def test_identical_deterministic_calls_are_one_node(model: Counted) -> None:
    """At temperature 0 the same request is the same answer: one node, paid once."""

    @plait.workflow
    async def twice() -> list[str]:
        a = plait.generate("same?", model=model)
        b = plait.generate("same?", model=model)
        assert a == b  # the same node
        return [await a, await b]

    result = plait.run(twice)
    assert result.value == ["re: same?"] * 2
    assert model.calls == 1 and len(result.nodes) == 1


def test_samples_are_distinct_nodes_and_each_replays(journal: str) -> None:
    n = [0]

    def sampled(messages: Sequence[Message], role: str | None) -> str:
        n[0] += 1
        return f"idea {n[0]}"

    model = Counted(sampled)

    @plait.workflow
    async def ideas() -> list[str]:
        refs = [plait.generate("an idea", model=model, temperature=0.8) for _ in range(3)]
        return [await r for r in refs]

    first = plait.run(ideas, journal=journal, run_id="s1")
    assert first.value == ["idea 1", "idea 2", "idea 3"] and model.calls == 3
    requests = [node.arguments["request"] for node in first._nodes]
    # The first sample is the request itself; the others are numbered.
    assert [r.get("sample") for r in requests] == [None, 1, 2]

    again = plait.run(ideas, journal=journal, run_id="s1")
    assert again.value == first.value  # each sample replayed, in its place
    assert model.calls == 3 and again.replayed == 3


def test_tokens_and_ttft_are_in_the_node_record_and_the_journal(journal: str) -> None:
    model = Counted(lambda m, r: "one two three four", ttft=0.2, tps=200)

    @plait.workflow
    async def one() -> str:
        return await plait.generate("count to four", model=model, max_tokens=50)

    result = plait.run(one, journal=journal, run_id="t1")
    node = result.nodes[0]
    record = node.extra
    assert record["completion_tokens"] == 4 and record["prompt_tokens"] == 3
    assert record["estimated"] is False
    assert node.tokens == 7 == result.tokens
    assert 0.2 <= record["ttft"] < record["elapsed"] < 1.0

    with open_journal(journal) as j:
        state = j.load("t1")
    (stored,) = state.results.values()
    assert stored.value == "one two three four" and stored.tokens == 7
    assert {k: stored.extra[k] for k in record} == record
    assert stored.extra["session"] == 1  # the journal's own field stays beside them


def test_seed_reaches_the_model_and_is_part_of_the_identity(model: Counted) -> None:
    @plait.workflow
    async def seeded() -> list[str]:
        a = plait.generate("x", model=model, seed=7)
        b = plait.generate("x", model=model, seed=8)
        c = plait.generate("x", model=model)
        return [await a, await b, await c]

    result = plait.run(seeded)
    assert model.calls == 3 and len(result.nodes) == 3
    assert sorted(r.seed for r in model.requests if r.seed is not None) == [7, 8]
    assert "seed" not in result._nodes[2].arguments["request"]  # unset: left out


def test_retryable_errors_are_retried_others_are_not() -> None:
    from plait.llm import SimLLM

    dropped = SimLLM([{"reply": "a b c", "fault": {"drop_after": 1}, "times": 1}, "a b c"],
                     ttft=0.0, tps=5000)

    @plait.workflow
    async def once(m: object) -> str:
        return await plait.generate("q", model=m)

    result = plait.run(once, dropped)
    assert result.value == "a b c" and result.nodes[0].attempts == 2

    refused = SimLLM([{"reply": "x", "fault": {"status": 400}, "times": 1}, "x"], ttft=0.0)
    with pytest.raises(plait.RunError) as caught:
        plait.run(once, refused)
    assert caught.value.result.nodes[0].attempts == 1  # a 400 stays a 400
    assert "HTTP 400" in str(caught.value)


def test_a_call_past_its_timeout_says_which_option_to_raise() -> None:
    slow = Counted("late", ttft=2.0)
    fast_fail = plait.llm_tool(slow, name="slow", retries=0, timeout=0.2)

    @plait.workflow
    async def one() -> str:
        return await fast_fail("q")

    t0 = time.perf_counter()
    with pytest.raises(plait.RunError) as caught:
        plait.run(one)
    assert time.perf_counter() - t0 < 1.5
    error = caught.value.result.nodes[0].error
    assert isinstance(error, LLMTimeout)
    assert "within its timeout of 0.2 s" in str(error) and "pass timeout=" in str(error)


def test_outside_a_run_a_call_runs_to_completion(model: Counted) -> None:
    assert plait.generate("hello", model=model) == "re: hello"

    async def in_async_code() -> str:
        return await plait.generate("there", model=model)

    assert asyncio.run(in_async_code()) == "re: there"
    assert model.calls == 2


def test_prompts_and_messages_in_every_form(model: Counted) -> None:
    @plait.workflow
    async def forms() -> list[str]:
        return [
            await plait.generate([{"role": "user", "content": "dict"}], model=model),
            await plait.generate([Message("user", "message")], model=model),
            await plait.generate([("system", "sys"), ("user", "pair")], model=model),
            await plait.generate(plait.Template(("t: ", plait.generate("x", model=model))),
                                 model=model),
        ]

    assert plait.run(forms).value == ["re: dict", "re: message", "re: pair", "re: t: re: x"]
    with pytest.raises(ValueError, match="role must be one of"):
        plait.generate([{"role": "robot", "content": "x"}], model=model)
    with pytest.raises(TypeError, match="a prompt"):
        plait.generate(42, model=model)
    assert model.calls == 5  # nothing was asked for the bad ones


def test_the_tool_name_is_the_role_the_model_sees(model: Counted) -> None:
    summarize = plait.llm_tool(model, name="summarize", system="One line.", max_tokens=20)

    @plait.workflow
    async def wf() -> list[str]:
        return [await summarize("long text"), await plait.generate("plain", model=model)]

    result = plait.run(wf)
    assert [n.tool for n in result.nodes] == ["summarize", "generate"]
    assert [r.role for r in model.requests] == ["summarize", "generate"]
    assert model.requests[0].max_tokens == 20
    assert model.requests[0].messages[0] == Message("system", "One line.")
    with pytest.raises(TypeError, match="unknown option"):
        summarize("x", temprature=1)


def test_a_prefill_is_part_of_the_call_and_its_identity(journal: str) -> None:
    """The prefix reaches the model, the value is the continuation only, a call with a
    prefix is not the same node as one without, and a resumed run replays it."""
    model = Counted(lambda m, r, prefill: f"<{prefill}>" if prefill else "new turn")

    @plait.workflow
    async def two() -> list[str]:
        a = plait.generate("q", model=model, prefill="Let me see:")
        b = plait.generate("q", model=model)
        c = plait.generate("q", model=model, prefill="Let me see:")  # the same as a
        return [await a, await b, await c]

    first = plait.run(two, journal=journal, run_id="p1")
    assert first.value == ["<Let me see:>", "new turn", "<Let me see:>"]
    assert model.calls == 2 and [r.prefill for r in model.requests] in (
        [None, "Let me see:"], ["Let me see:", None])
    assert len(first.nodes) == 2  # c is a's node: the prefix is in the identity, once
    again = plait.run(two, journal=journal, run_id="p1")
    assert again.value == first.value and model.calls == 2
