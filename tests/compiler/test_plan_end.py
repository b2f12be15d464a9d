"""How a plan ends, through the compiler: a plan without join() is reported as
"incomplete" (what ran still goes to the joiner, nothing is repaired), and text
after join() on its line never runs."""

from __future__ import annotations

from plait.compiler import PlanProblem, aask

from .conftest import TOOLS, scripted

FINISH = '{"action": "finish", "answer": "done"}'


async def test_a_plan_cut_before_join_is_reported_not_repaired():
    calls = []
    llm = scripted({"plan": '1. search("a")\n2. search("bb")\n', "joiner": FINISH},
                   tps=500, calls=calls)
    events = []
    answer = await aask("q", TOOLS.values(), model=llm, on_event=events.append)
    assert answer.text == "done" and [t.state for t in answer.tasks] == ["done", "done"]
    assert [(e.line, e.kind) for e in answer.plans[0].errors] == [(3, "incomplete")]
    assert not answer.plans[0].joined and answer.unresolved == ()
    assert [role for role, _ in calls] == ["plan", "joiner"]  # no repair round
    problems = [e.error.kind for e in events if isinstance(e, PlanProblem)]
    assert problems == ["incomplete"]


async def test_a_call_after_join_on_its_line_does_not_run():
    llm = scripted({"plan": '1. search("a")\n2. join() 3. search("never")', "joiner": FINISH},
                   tps=500)
    answer = await aask("q", TOOLS.values(), model=llm)
    assert [t.number for t in answer.tasks] == [1] and answer.plans[0].joined
    assert all(e.kind == "after_join" for e in answer.plans[0].errors)
