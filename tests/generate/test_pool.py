"""`LLMPool`: the models of a run, opened once, shared by its calls, closed at its end.

A run enters a pool of its own when none is current; a dataset job enters ONE
around many runs, so they share each model (its script state, its connections,
its limits). Model options and limits (`llm_tool(..., rpm=...)`) reach the
backend where the pool opens it; what a backend does not take is refused clearly.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

import plait
from plait.compiler import aask
from plait.generate import LLMPool
from plait.llm import LLMOptionError, SimLLM, SimServer
from plait.llm import _openai


@plait.workflow
async def one(spec: str) -> str:
    return await plait.generate("next?", model=spec)


def queue_spec(tmp_path: Path) -> str:
    """A sim spec whose script is a queue: each reply is given once, in order."""
    script = tmp_path / "queue.json"
    script.write_text(json.dumps(["first", "second"]))
    return f"sim:ttft=0,tps=5000,script={script}"


def test_runs_in_one_pool_share_the_model(tmp_path: Path) -> None:
    spec = queue_spec(tmp_path)

    async def job() -> list[str]:
        async with LLMPool() as pool:
            values = [(await plait.arun(one, spec)).value for _ in range(2)]
            assert len(pool._models) == 1  # opened once for both runs
            return values

    # One model for both runs: its queue went on from the first run to the second.
    assert asyncio.run(job()) == ["first", "second"]
    # Without a pool around them each run opens (and closes) its own.
    assert [plait.run(one, spec).value for _ in range(2)] == ["first", "first"]


def test_a_run_closes_the_models_it_opened() -> None:
    with SimServer("hi", ttft=0.0, tps=5000) as server:
        def clients() -> list[str]:
            return [key for _, key in _openai._CLIENTS if server.base_url in key]

        @plait.workflow
        async def uses_a_client() -> list[str]:
            text = await plait.generate("q", model="openai:sim")
            return [text, *clients()]  # open while the run runs

        with pytest.MonkeyPatch.context() as env:
            env.setenv("OPENAI_BASE_URL", server.base_url)
            env.setenv("OPENAI_API_KEY", "sk-test")
            value = plait.run(uses_a_client).value
    assert value[0] == "hi" and len(value) == 2
    assert clients() == []  # its HTTP client was released at the run's end


def test_limits_reach_the_backend() -> None:
    """rpm=60 is one request a second: the second of two calls waits for it."""
    with SimServer("ok", ttft=0.0, tps=5000) as server:
        limited = plait.llm_tool("openai:sim", name="limited", rpm=60,
                                 base_url=server.base_url, api_key="sk-test")

        @plait.workflow
        async def two() -> list[str]:
            a, b = limited("a"), limited("b")
            return [await a, await b]

        t0 = time.perf_counter()
        assert plait.run(two).value == ["ok", "ok"]
        assert time.perf_counter() - t0 >= 0.9


def test_options_a_backend_does_not_take_are_refused_clearly() -> None:
    odd = plait.llm_tool("sim", name="odd", bogus_option=3)
    with pytest.raises(LLMOptionError, match="'sim' does not take the option.*bogus_option"):
        odd("q")


def test_a_model_open_with_other_limits_is_an_error_naming_both() -> None:
    pool = LLMPool()
    pool.llm("sim", tps=100)
    assert pool.llm("sim") is pool.llm("sim", tps=100)  # no options: shared as it is
    with pytest.raises(LLMOptionError, match=r"\(tps=100\).*\(tps=200\)"):
        pool.llm("sim", tps=200)


def test_the_default_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = queue_spec(tmp_path)

    @plait.workflow
    async def unnamed() -> str:
        return await plait.generate("q")

    async def with_default() -> str:
        async with LLMPool(default=spec):
            return (await plait.arun(unnamed)).value

    assert asyncio.run(with_default()) == "first"
    monkeypatch.setenv("PLAIT_MODEL", spec)
    result = plait.run(unnamed)
    assert result.value == "first"
    assert result._nodes[0].arguments["request"]["model"].startswith("sim:")


def test_questions_with_their_own_models_share_one_pool() -> None:
    """Two asks in one pool, each with its own scripted object under the same spec:
    each is answered by its own (the second is held in a child pool)."""
    from plait.examples import tools

    def model(answer: str) -> SimLLM:
        def script(messages: list, role: str | None) -> str:
            if role == "planner":
                return '1. search("K2")\n2. join()'
            return json.dumps({"action": "finish", "answer": answer})

        return SimLLM(script, ttft=0.0, tps=5000)

    async def both() -> list[str]:
        async with LLMPool():
            answers = await asyncio.gather(
                aask("q?", tools, model=model("from A"), timeout=30),
                aask("q?", tools, model=model("from B"), timeout=30))
        return [a.text for a in answers]

    assert asyncio.run(both()) == ["from A", "from B"]
