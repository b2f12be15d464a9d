"""A replan written in the joiner's own reply: `Replan: <why>` and then the new plan.

One LLM call per replan round (not a joiner's and then a planner's); the new
plan's tasks are dispatched while that reply streams, by the same plan parser;
the whole is journaled and replayed like any plan. The model is plait's
simulated backend, scripted by role.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

import plait
from plait.compiler import PlanParser, PlanText, TaskDispatched, aask
from plait.compiler._grammar import plan_grammar_tree
from plait.compiler._joiner import decision_grammar_tree
from plait.journal import open_journal
from plait.llm import Message, SimLLM

from .conftest import Clock, recording_tool

PLAN = '1. probe("a")\n2. probe("b")\n3. join()'
REPLAN = 'Replan: "a" is not enough; probe "a2".\n3. probe("a2 ${1}")\n4. join()'
FINISH = "Finish: a2 and b"


def model(calls: list[str], replan: str = REPLAN, **timing: float) -> SimLLM:
    def script(messages: Sequence[Message], role: str | None) -> str:
        if role == "planner":
            calls.append("planner")
            return PLAN if "Results of the previous plan" not in messages[-1].content else (
                '3. probe("a2 ${1}")\n4. join()')
        k = calls.count("joiner")
        calls.append("joiner")
        return replan if k == 0 else FINISH

    return SimLLM(script, **({"ttft": 0.0, "tps": 2000.0} | timing))


async def test_a_replan_round_costs_one_llm_call():
    calls: list[str] = []
    clock = Clock()
    events: list = []
    answer = await aask("q", [recording_tool(clock, delay=0.01)], model=model(calls),
                        on_event=events.append)
    assert answer.text == "a2 and b"
    assert calls == ["planner", "joiner", "joiner"]
    assert [c.role for c in answer.llm_calls] == ["planner", "joiner", "joiner"]
    assert [(p.kind, p.round, p.writer) for p in answer.plans] == [
        ("plan", 0, "planner"), ("replan", 1, "joiner")]
    assert answer.replans == 1 and answer.plans[1].tasks == (3,)
    assert answer.plans[1].text == '3. probe("a2 ${1}")\n4. join()' and answer.plans[1].joined
    assert [(d.action, d.answer) for d in answer.decisions] == [
        ("replan", '"a" is not enough; probe "a2".'), ("finish", "a2 and b")]
    assert answer.task(3).value == "a2 a" and answer.task(3).plan == 1
    assert answer.critical_path_bound() <= answer.elapsed + 1e-6


async def test_the_replan_task_runs_while_the_joiner_still_writes():
    # The joiner stalls for good right after the task's `)`: only a task dispatched
    # from its stream can have run.
    clock = Clock()
    probe = recording_tool(clock, delay=0.01)
    # 10 tokens: `Replan:` ... ` "a2".` `\n3.` ` probe("a2` ` ${1}")`
    llm = SimLLM([{"role": "planner", "reply": PLAN},
                  {"role": "joiner", "reply": REPLAN, "fault": {"stall_after": 10}}],
                 ttft=0.0, tps=1000)
    events: list = []
    run = asyncio.create_task(aask("q", [probe], model=llm, llm_timeout=None,
                                   on_event=events.append))
    try:
        for _ in range(500):
            if "end:a2 a" in clock.marks:
                break
            await asyncio.sleep(0.01)
        assert "end:a2 a" in clock.marks
        assert [e.number for e in events if isinstance(e, TaskDispatched)] == [1, 2, 3]
        texts = [e.text for e in events if isinstance(e, PlanText) and e.plan == 1]
        assert "".join(texts) == '3. probe("a2 ${1}")'  # no newline after it, no join()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_a_bare_replan_asks_the_planner():
    calls: list[str] = []
    clock = Clock()
    answer = await aask("q", [recording_tool(clock, delay=0.01)],
                        model=model(calls, replan='Replan: "a" is not enough'))
    assert calls == ["planner", "joiner", "planner", "joiner"]
    assert [(p.kind, p.writer) for p in answer.plans] == [("plan", "planner"),
                                                          ("replan", "planner")]
    assert answer.text == "a2 and b" and answer.task(3).value == "a2 a"


async def test_the_last_round_may_not_replan_and_is_told_so():
    seen: list[str] = []

    def script(messages: Sequence[Message], role: str | None) -> str:
        if role == "planner":
            return PLAN
        seen.append(messages[0].content)
        return REPLAN if len(seen) == 1 else FINISH

    answer = await aask("q", [recording_tool(Clock(), delay=0.0)],
                        model=SimLLM(script, ttft=0.0, tps=2000), max_replans=1)
    assert answer.text == "a2 and b"
    assert "Replan:" in seen[0] and "numbered from 3" in seen[0] and "probe(" in seen[0]
    assert "Replan:" not in seen[1]  # out of replans: finish only


def test_a_joiner_written_replan_replays_from_the_journal(tmp_path: Path) -> None:
    ran: list[str] = []

    @plait.tool
    def probe(label: str) -> str:
        """Records that it ran (not idempotent: it must never run twice unannounced)."""
        ran.append(label)
        return label

    spec = str(tmp_path / "runs.db")
    calls: list[str] = []
    first = plait.ask("q", [probe], model=model(calls), journal=spec, run_id="r1")
    assert first.text == "a2 and b" and calls == ["planner", "joiner", "joiner"]
    assert sorted(ran) == ["a", "a2 a", "b"]

    def silent(messages: Sequence[Message]) -> str:
        raise AssertionError("a replayed question called the model")

    again = plait.ask("q", [probe], model=SimLLM(silent), journal=spec, run_id="r1")
    assert again.text == first.text and sorted(ran) == ["a", "a2 a", "b"]
    assert [(t.number, t.value, t.plan) for t in again.tasks] == [
        (t.number, t.value, t.plan) for t in first.tasks]
    assert [(p.kind, p.writer, p.text, p.tasks) for p in again.plans] == [
        (p.kind, p.writer, p.text, p.tasks) for p in first.plans]
    assert all(c.replayed for c in again.llm_calls) and again.tokens == first.tokens
    journal = open_journal(spec)
    try:
        state = journal.load("r1")
    finally:
        journal.close()
    assert sorted(i.tool for i in state.intents.values()) == [
        "joiner", "joiner", "planner", "probe", "probe", "probe"]


@pytest.mark.parametrize("may_replan", [True, False])
def test_the_grammar_takes_a_replan_with_its_plan_only_when_replanning(may_replan):
    tools = {"probe": recording_tool(Clock())}
    plan = plan_grammar_tree(tools.values(), first=3, known=[1, 2], max_tasks=3)
    g = decision_grammar_tree(may_replan, plan if may_replan else None)
    rng = random.Random(7)
    replans = 0
    for _ in range(60):
        text = g.sample(rng)
        assert text.startswith("Finish: ") or (may_replan and text.startswith("Replan: "))
        if text.startswith("Replan: "):
            replans += 1
            body = text.split("\n", 1)[1]
            p = PlanParser(tools, known=[1, 2])
            p.feed(body)
            p.close()
            assert p.joined and not p.errors, (body, p.errors)
    assert (replans > 0) == may_replan


def test_plait_show_reads_the_replan_in_the_joiner_reply(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from plait.cli import app

    @plait.tool
    def probe(label: str) -> str:
        """Echoes its label."""
        return label

    spec = str(tmp_path / "runs.db")
    plait.ask("q", [probe], model=model([]), journal=spec, run_id="r2")
    r = CliRunner().invoke(app, ["show", "r2", "--journal", spec], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    expected = ["plan 1 (#1 planner):", 'decision (#4 joiner): replan: "a" is not enough',
                "plan 2 (#4 joiner):", '    3. probe("a2 ${1}")', "task #5 probe",
                "decision (#6 joiner): finish: a2 and b", "answer: a2 and b"]
    at = [r.stdout.find(line) for line in expected]
    assert -1 not in at and at == sorted(at), r.stdout
    r = CliRunner().invoke(app, ["show", "r2", "--journal", spec, "--json"])
    steps = json.loads(r.stdout)["question"]["steps"]
    assert [s["kind"] for s in steps] == ["plan", "task", "task", "decision", "plan", "task",
                                          "decision"]
    assert steps[4]["text"] == '3. probe("a2 ${1}")\n4. join()' and steps[3]["action"] == "replan"
