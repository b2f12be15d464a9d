"""Planner, dispatch, repair, joiner and replanning, with a scripted model.

The model in these tests is `plait.llm.SimLLM` driven by `conftest.scripted`:
each role (plan, repair, replan, joiner, react) gets scripted replies, streamed
word by word with the ttft and tokens/s asked for.
"""

from __future__ import annotations

import asyncio
import types

import pytest

import plait
from plait.compiler import (
    Answer,
    PlanFinished,
    TaskDispatched,
    aask,
    ask,
    tools_of,
)
from plait.llm import LLMOptionError, SimLLM

from .conftest import TOOLS, Clock, recording_tool, scripted

FINISH = '{"action": "finish", "answer": "done"}'


async def test_task_one_runs_while_the_plan_is_still_streaming():
    clock = Clock()
    probe = recording_tool(clock, delay=0.3)
    plan = '1. probe("one")\n2. probe("two ${1}")\n3. probe("three")\n4. join()'
    # 20 words/s: the plan takes ~0.4 s to write; line 1 is complete at ~0.15 s.
    llm = scripted({"plan": plan, "joiner": FINISH}, ttft=0.05, tps=20)
    events = []
    answer = await aask("q", [probe], model=llm, on_event=events.append)
    dispatched = {e.number: e.t for e in events if isinstance(e, TaskDispatched)}
    plan_done = next(e.t for e in events if isinstance(e, PlanFinished))
    # Task 1 started before the planner had written the rest of the plan ...
    assert clock.marks["start:one"] < plan_done - 0.1
    assert dispatched[1] < dispatched[3] - 0.1
    # ... right when its line was parsed, not later.
    assert clock.marks["start:one"] - dispatched[1] < 0.02
    # Task 2 waited for task 1 (its input), task 3 did not wait for task 2.
    assert clock.marks["start:two one"] >= clock.marks["end:one"]
    assert answer.task(2).value == "two one"
    assert answer.task(3).started_at < answer.task(2).finished_at
    assert answer.text == "done"


async def test_the_answer_records_everything():
    plan = '1. search("a")\n2. search("bb")\n3. add(1, b=2)\n4. join()'
    llm = scripted({"plan": plan, "joiner": '{"thought": "easy", "action": "finish", '
                                             '"answer": "bb is taller"}'}, ttft=0.02, tps=200)
    answer = await aask("Which is taller?", TOOLS.values(), model=llm)
    assert isinstance(answer, Answer) and str(answer) == "bb is taller"
    assert [t.number for t in answer.tasks] == [1, 2, 3]
    assert [t.state for t in answer.tasks] == ["done"] * 3
    assert answer.task(3).value == 3.0
    assert answer.task(1).value == "a: height 100 m"
    assert all(t.duration is not None and t.parsed_at <= t.started_at for t in answer.tasks)
    assert [p.kind for p in answer.plans] == ["plan"] and answer.plans[0].joined
    assert answer.decisions[0].thought == "easy"
    assert [c.role for c in answer.llm_calls] == ["planner", "joiner"]
    assert answer.tokens == answer.prompt_tokens + answer.completion_tokens > 0
    assert answer.completion_tokens == sum(c.completion_tokens for c in answer.llm_calls)
    assert answer.unresolved == () and answer.errors == () and answer.replans == 0
    bound = answer.critical_path_bound()
    assert 0 < bound <= answer.elapsed + 1e-3
    assert answer.elapsed / bound < 1.2
    with pytest.raises(AttributeError):
        answer.text = "x"  # type: ignore[misc]


async def test_a_bad_line_is_repaired():
    calls = []
    llm = scripted({
        "plan": '1. search("a")\n2. google("b")\n3. add($2)\n4. join()',
        "repair": '3. search("b")\n4. join()',
        "joiner": FINISH,
    }, calls=calls)
    answer = await aask("q", TOOLS.values(), model=llm)
    assert [p.kind for p in answer.plans] == ["plan", "repair"]
    assert [e.kind for e in answer.plans[0].errors] == ["unknown_tool", "missing_ref"]
    assert answer.plans[1].errors == () and answer.unresolved == ()
    assert [(t.number, t.call, t.state) for t in answer.tasks] == [
        (1, 'search("a")', "done"), (3, 'search("b")', "done")]
    repair_prompt = next(m for role, m in calls if role == "repair")[-1].content
    assert 'google("b")' in repair_prompt and "unknown_tool" in repair_prompt
    assert "numbered from 4" in repair_prompt  # numbers never reused: 1-3 were seen


async def test_a_plan_that_cannot_be_repaired_is_reported_not_dropped():
    calls = []
    llm = scripted({"plan": '1. search("a")\n2. nope()\n3. join()',
                    "repair": "2. nope()\n3. join()", "joiner": FINISH}, calls=calls)
    answer = await asyncio.wait_for(
        aask("q", TOOLS.values(), model=llm, max_repairs=2), timeout=10
    )
    assert [role for role, _ in calls] == ["plan", "repair", "repair", "joiner"]
    assert [e.kind for e in answer.unresolved] == ["unknown_tool"]
    assert answer.text == "done" and [t.number for t in answer.tasks] == [1]


async def test_replan_continues_numbering_and_uses_earlier_results():
    calls = []
    llm = scripted({
        "plan": '1. search("Mercury")\n2. join()',
        "replan": 'Thought: be specific.\n2. search("${1} planet")\n3. concat([$1, $2])\n4. join()',
        "joiner": ['{"action": "replan", "answer": "ambiguous: which Mercury?"}', FINISH],
    }, calls=calls)
    answer = await aask("q", TOOLS.values(), model=llm)
    assert [p.kind for p in answer.plans] == ["plan", "replan"] and answer.replans == 1
    assert [d.action for d in answer.decisions] == ["replan", "finish"]
    assert answer.task(2).value.startswith("Mercury: height 700 m planet")
    assert answer.task(3).refs == (1, 2) and answer.task(3).plan == 1
    replan_prompt = next(m for role, m in calls if role == "replan")[-1].content
    assert "ambiguous: which Mercury?" in replan_prompt
    assert 'search("Mercury") -> Mercury: height 700 m' in replan_prompt
    assert "numbered from 2" in replan_prompt


async def test_max_replans_bounds_the_rounds():
    calls = []
    replan = '{"action": "replan", "answer": "more"}'
    llm = scripted({"plan": '1. search("a")\n2. join()', "replan": '2. search("b")\n3. join()',
                    "joiner": replan}, calls=calls)
    answer = await aask("q", TOOLS.values(), model=llm, max_replans=1)
    roles = [role for role, _ in calls]
    assert roles == ["plan", "joiner", "replan", "joiner"]
    # The last joiner may not replan: its reply is taken as the answer.
    assert answer.decisions[-1].action == "finish" and answer.text == "more"
    assert "replan" not in calls[-1][1][0].content  # the last prompt offers no replan


async def test_failed_task_does_not_stop_the_others():
    calls = []
    plan = '1. fail("boom")\n2. search("${1}")\n3. search("ok")\n4. join()'
    llm = scripted({"plan": plan, "joiner": FINISH}, calls=calls)
    answer = await aask("q", TOOLS.values(), model=llm)
    states = {t.number: t.state for t in answer.tasks}
    assert states == {1: "failed", 2: "skipped", 3: "done"}
    assert "boom" in answer.task(1).error
    joiner_prompt = calls[-1][1][-1].content
    assert "ERROR: RuntimeError: boom" in joiner_prompt
    assert answer.text == "done"


async def test_a_ref_to_a_text_parameter_is_passed_as_text():
    llm = scripted({"plan": '1. height("abc")\n2. search($1)\n3. add($1, $1)\n4. join()',
                    "joiner": FINISH})
    answer = await aask("q", TOOLS.values(), model=llm)
    assert answer.task(2).value == "300.0: height 500 m"
    assert answer.task(3).value == 600.0


async def test_a_stalled_model_times_out():
    llm = SimLLM([{"reply": '1. search("a")\n2. join()', "fault": {"stall_after": 2}}],
                 ttft=0.0, tps=1000)
    with pytest.raises(TimeoutError):
        await aask("q", TOOLS.values(), model=llm, llm_timeout=0.3)
    with pytest.raises(TimeoutError):
        await aask("q", TOOLS.values(), model=SimLLM([{"reply": "x", "fault": {"hang": True}}]),
                   timeout=0.3, llm_timeout=None)


async def test_an_llm_error_is_raised():
    from plait.llm import LLMHTTPError

    llm = SimLLM([{"reply": "x", "fault": {"status": 400}}], ttft=0.0)
    with pytest.raises(LLMHTTPError):
        await aask("q", TOOLS.values(), model=llm)


class NoGrammarLLM(SimLLM):
    """A backend that refuses GBNF grammars (like a hosted OpenAI model)."""

    def _check(self, request):
        if request.grammar is not None:
            raise LLMOptionError("no grammars here")


async def test_backend_without_grammar_gets_plain_prompts():
    llm = NoGrammarLLM(lambda m: '1. search("a")\n2. join()' if "plan" in m[0].content.lower()
                       and "JSON" not in m[0].content else FINISH, ttft=0.0, tps=1000)
    answer = await aask("q", TOOLS.values(), model=llm)
    assert answer.plans[0].constrained is False and answer.task(1).state == "done"
    with pytest.raises(LLMOptionError):
        await aask("q", TOOLS.values(), model=llm, constrained=True)


async def test_tools_from_a_module_with_examples():
    module = types.ModuleType("m")
    module.search = TOOLS["search"]
    module.alias = TOOLS["search"]
    module.add = TOOLS["add"]
    module.other = 3
    module.PLAN_EXAMPLES = ['Question: x?\n1. search("x")\n2. join()']
    found, examples = tools_of(module)
    assert [t.name for t in found] == ["search", "add"] and len(examples) == 1
    calls = []
    llm = scripted({"plan": '1. search("a")\n2. join()', "joiner": FINISH}, calls=calls)
    await aask("q", module, model=llm)
    system = calls[0][1][0].content
    assert 'Question: x?\n1. search("x")' in system
    assert "search(entity: str) -> str" in system and "add(a: float" in system


async def test_argument_checks():
    with pytest.raises(ValueError):
        await aask("q", [], model=scripted({}))
    with pytest.raises(ValueError):
        await aask("q", TOOLS.values(), model=scripted({}), mode="magic")

    @plait.tool(name="join")
    def join_tool() -> str:
        """Clashes with the plan language."""
        return ""

    with pytest.raises(ValueError):
        await aask("q", [join_tool], model=scripted({}))

    @plait.tool(name="planner")
    def planner_tool() -> str:
        """Clashes with the nodes of the planner's own LLM calls."""
        return ""

    with pytest.raises(ValueError, match="planner"):
        await aask("q", [planner_tool], model=scripted({}))


def test_sync_ask():
    llm = scripted({"plan": '1. search("a")\n2. join()', "joiner": FINISH})
    assert ask("q", TOOLS.values(), model=llm).text == "done"


async def test_sync_ask_inside_a_loop_is_refused():
    with pytest.raises(RuntimeError):
        ask("q", TOOLS.values(), model=scripted({}))


async def test_react_mode():
    calls = []
    llm = scripted({"react": [
        'Thought: look up a.\nAction: search("a")',
        "Thought: hmm.\nAction: search(a)",  # not a literal: an error observation
        'Thought: I know it.\nAction: finish("a is 100 m")',
    ]}, calls=calls)
    answer = await aask("q", TOOLS.values(), model=llm, mode="react")
    assert answer.text == "a is 100 m" and answer.mode == "react"
    assert [p.kind for p in answer.plans] == ["react"] * 3
    assert [(t.number, t.state, t.value) for t in answer.tasks] == [(1, "done", "a: height 100 m")]
    assert [c.role for c in answer.llm_calls] == ["react"] * 3
    third = calls[2][1]
    assert third[-1].content.startswith("Observation: ERROR")
    assert third[-3].content == "Observation: a: height 100 m"
    assert answer.critical_path_bound() <= answer.elapsed + 1e-3


async def test_react_runs_out_of_steps():
    llm = scripted({"react": ['Thought: again.\nAction: search("a")',
                              'Thought: again.\nAction: search("a")',
                              'Thought: out of steps.\nAction: finish("best guess")']})
    answer = await aask("q", TOOLS.values(), model=llm, mode="react", max_steps=2)
    assert answer.text == "best guess" and len(answer.tasks) == 2


async def test_max_concurrency_counts_the_models_calls_too():
    """With one slot, the planner's call, each task and the joiner's call run one at
    a time (the tasks wait for the plan to end), and the answer still comes."""
    clock = Clock()
    probe = recording_tool(clock, delay=0.02)
    plan = '1. probe("a")\n2. probe("b")\n3. join()'
    events = []
    answer = await aask("q", [probe], model=scripted({"plan": plan, "joiner": FINISH}, tps=200),
                        max_concurrency=1, on_event=events.append)
    assert answer.text == "done" and [t.value for t in answer.tasks] == ["a", "b"]
    running, most = 0, 0
    for e in events:
        if isinstance(e, plait.NodeStarted):
            running += 1
            most = max(most, running)
        elif isinstance(e, (plait.NodeFinished, plait.NodeFailed, plait.NodeCancelled)):
            running -= 1
    assert most == 1
    started = [e.tool for e in events if isinstance(e, plait.NodeStarted)]
    assert started == ["planner", "probe", "probe", "joiner"]
