"""`plait.pdr` as a workflow of generate calls, and `plait.reasoner` as a plan's tool."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

import plait
from plait.llm import Message, SimLLM


def _pdr_model() -> SimLLM:
    def script(messages: Sequence[Message], role: str | None) -> str:
        text = messages[-1].content
        if role == "draft":
            return "draft work\nanswer 42"
        if role == "distill":
            return f"summary of {text.count('--- draft')} drafts"
        assert role == "refine", role
        return "refined: " + re.sub(r"\s+", " ", text.split("Notes from drafts:\n", 1)[1])[:40]
    return SimLLM(script, ttft=0.01, tps=1000)


@pytest.mark.parametrize("distill", ["summary", "top_k", "random_k"])
def test_pdr_runs_drafts_at_once_then_distills_and_refines(distill: str) -> None:
    result = plait.run(plait.pdr, "What is 6 x 7?", model=_pdr_model(), drafts=4, rounds=2,
                       distill=distill, k=2)
    tools = [n.tool for n in result.nodes]
    assert tools.count("draft") == 8  # sampled: each a call of its own
    # Deterministic calls with the same prompt are one node (the sim's drafts are alike).
    assert 1 <= tools.count("refine") <= 2
    assert tools.count("distill") == (tools.count("refine") if distill == "summary" else 0)
    drafts = [n for n in result.nodes if n.tool == "draft"][:4]
    # The round's four drafts ran at once: each started before any ended.
    assert max(n.started_at for n in drafts) < min(n.finished_at for n in drafts)
    if distill == "summary":
        assert result.value.startswith("refined: summary of 4 drafts")
    else:
        assert result.value.startswith("refined: draft work answer 42 --- draft")


def test_pdr_refuses_bad_options() -> None:
    with pytest.raises(plait.RunError, match="distill"):
        plait.run(plait.pdr, "q", model=_pdr_model(), distill="best")


def test_a_reasoner_is_a_tool_a_plan_calls(tmp_path) -> None:
    reasoning = SimLLM([{"role": "reason", "reply": "Half of 10 is 5.", "times": 1},
                        {"role": "reason", "reply": "Twice 3 is 6.", "times": 1}], ttft=0.01,
                       spec="sim-reasoner")  # the plan's pool holds the planner's "sim"
    think = plait.reasoner(reasoning, fork="threadweaver")
    assert think.name == "reason"
    planner = SimLLM([
        {"role": "planner", "reply": '1. reason("half of 10")\n2. reason("twice 3")\n3. join()'},
        {"role": "joiner", "reply": "Finish: 5 and 6"}], ttft=0.01)
    journal = str(tmp_path / "runs.db")
    answer = plait.ask("half of 10, twice 3?", [think], model=planner, journal=journal,
                       run_id="r1")
    assert answer.text == "5 and 6"
    assert sorted(str(t.value) for t in answer.tasks) == ["Half of 10 is 5.", "Twice 3 is 6."]
    # Asked again under the same run id: the reasoning tool's nodes replay (the
    # reasoning model has no reply left, so a second call would fail).
    again = plait.ask("half of 10, twice 3?", [think], model=planner, journal=journal,
                      run_id="r1")
    assert again.text == "5 and 6"
