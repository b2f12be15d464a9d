"""A journaled `ask`: the planner's and joiner's LLM calls are nodes of the run, so a
resumed question replays its plan and decisions and pays for no finished call twice.

The model is plait's simulated backend with scripted replies (`SimLLM`); the
journal is a real SQLite file or a real PostgreSQL schema; the crash is a real
SIGKILL of a child process (tests/durable/ask_child.py).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import plait
from plait.journal import open_journal
from plait.llm import Message, SimLLM

CHILD = Path(__file__).with_name("ask_child.py")
PLAN = '1. lookup("x")\n2. lookup("y")\n3. join()'
FINISH = '{"action": "finish", "answer": "x and y"}'


def _model(calls: list[str]) -> SimLLM:
    def script(messages: Sequence[Message]) -> str:
        joiner = "Finish:" in messages[0].content
        calls.append("joiner" if joiner else "planner")
        return FINISH if joiner else PLAN

    return SimLLM(script, ttft=0.0, tps=5000)


def _silent_model() -> SimLLM:
    def script(messages: Sequence[Message]) -> str:
        raise AssertionError("a replayed question called the model")

    return SimLLM(script, ttft=0.0, tps=5000)


def _tools(ran: list[str]) -> list[plait.Tool]:
    @plait.tool
    def lookup(name: str) -> str:
        """Look `name` up (not idempotent: it must never run twice unannounced)."""
        ran.append(name)
        return f"{name}!"

    return [lookup]


def test_asking_again_under_the_same_run_id_replays_everything(spec: str) -> None:
    calls: list[str] = []
    ran: list[str] = []
    tools = _tools(ran)
    first = plait.ask("x and y?", tools, model=_model(calls), journal=spec, run_id="q1")
    assert first.text == "x and y" and calls == ["planner", "joiner"]
    assert sorted(ran) == ["x", "y"]
    assert not any(c.replayed for c in first.llm_calls)

    again = plait.ask("x and y?", tools, model=_silent_model(), journal=spec, run_id="q1")
    assert again.text == first.text
    assert [(t.number, t.value) for t in again.tasks] == [(1, "x!"), (2, "y!")]
    assert sorted(ran) == ["x", "y"]  # no tool ran again
    assert [c.role for c in again.llm_calls] == ["planner", "joiner"]
    assert all(c.replayed for c in again.llm_calls)
    assert again.tokens == first.tokens  # what the answer cost, paid once

    journal = open_journal(spec)
    try:
        state = journal.load("q1")
    finally:
        journal.close()
    assert state.run.status == "done" and state.run.entry == "ask:compiler"
    assert state.run.tokens == first.tokens
    tools_journaled = sorted(i.tool for i in state.intents.values())
    assert tools_journaled == ["joiner", "lookup", "lookup", "planner"]
    # Each LLM call's tokens are in its own journaled result; the tools used none.
    by_tool = {state.intents[k].tool: r.tokens for k, r in state.results.items()}
    assert by_tool == {
        "planner": first.llm_calls[0].prompt_tokens + first.llm_calls[0].completion_tokens,
        "joiner": first.llm_calls[1].prompt_tokens + first.llm_calls[1].completion_tokens,
        "lookup": 0,
    }


def test_plait_resume_of_a_question_says_how(spec: str) -> None:
    plait.ask("x and y?", _tools([]), model=_model([]), journal=spec, run_id="q4")
    with pytest.raises(plait.PlaitError, match="CLI: plait resume q4"):
        plait.resume("q4", spec)


def test_a_different_question_under_a_taken_run_id_is_refused(spec: str) -> None:
    calls: list[str] = []
    tools = _tools([])
    plait.ask("x and y?", tools, model=_model(calls), journal=spec, run_id="q2")
    with pytest.raises(plait.PlaitError, match="cannot be resumed"):
        plait.ask("something else?", tools, model=_model(calls), journal=spec, run_id="q2")
    assert calls == ["planner", "joiner"]


def test_a_model_error_is_raised_and_the_run_marked_failed(spec: str) -> None:
    def script(messages: Sequence[Message]) -> str:
        raise RuntimeError("the model is down")

    with pytest.raises(Exception, match="the model is down"):
        plait.ask("q?", _tools([]), model=SimLLM(script), journal=spec, run_id="q3")
    journal = open_journal(spec)
    try:
        assert journal.get_run("q3").status == "failed"
    finally:
        journal.close()


def _child(spec: str, run_id: str, counter: Path, die: bool,
           *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(CHILD), "--journal", spec, "--run-id", run_id,
           "--counter", str(counter), *flags]
    return subprocess.run([*cmd, "--die"] if die else cmd, capture_output=True, text=True,
                          timeout=60)


def _ran(counter: Path) -> collections.Counter[str]:
    return collections.Counter(counter.read_text().splitlines())


@pytest.mark.timeout(120)
def test_an_ask_killed_mid_run_resumes_without_paying_twice(spec: str, tmp_path: Path) -> None:
    """SIGKILL while the last task runs: the resume replays the plan (no planner
    call), replays the three finished lookups, runs the cut-off task again (it is
    idempotent) and then the joiner, once; the answer equals an uninterrupted run's."""
    counter = tmp_path / "ran"
    killed = _child(spec, "crash", counter, die=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert _ran(counter) == {"llm planner": 1, "tool fetch a": 1, "tool fetch b": 1,
                             "tool fetch c": 1, "tool slow": 1}

    resumed = _child(spec, "crash", counter, die=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert _ran(counter) == {"llm planner": 1, "llm joiner": 1, "tool fetch a": 1,
                             "tool fetch b": 1, "tool fetch c": 1, "tool slow": 2}
    assert out["replayed_llm_calls"] == 1  # the plan; the joiner ran for the first time

    clean_counter = tmp_path / "clean"
    clean = _child(spec, "clean", clean_counter, die=False)
    assert clean.returncode == 0, clean.stderr[-2000:]
    expected = json.loads(clean.stdout.strip().splitlines()[-1])
    assert out["answer"] == expected["answer"] == "a, b and c"
    assert out["values"] == expected["values"]
    assert out["values"]["4"] == "FOUND A FOUND B FOUND C"


@pytest.mark.timeout(120)
def test_adopted_guesses_survive_a_kill_like_any_task(spec: str, tmp_path: Path) -> None:
    """With speculation: the lookups start as a draft's guesses, are adopted (and so
    journaled) as the plan's tasks; SIGKILL in the last task; the resume replays
    them, runs no guess again, and answers as an uninterrupted run without speculation."""
    counter = tmp_path / "ran"
    killed = _child(spec, "spec", counter, True, "--speculate")
    assert killed.returncode == -9, killed.stderr[-2000:]
    guesses = {"guess fetch a": 1, "guess fetch b": 1, "guess fetch c": 1}
    assert _ran(counter) == {"llm planner": 1, "tool fetch a": 1, "tool fetch b": 1,
                             "tool fetch c": 1, "tool slow": 1, **guesses}
    resumed = _child(spec, "spec", counter, False, "--speculate")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert _ran(counter) == {"llm planner": 1, "llm joiner": 1, "tool fetch a": 1,
                             "tool fetch b": 1, "tool fetch c": 1, "tool slow": 2, **guesses}
    clean = _child(spec, "clean", tmp_path / "clean", False)
    expected = json.loads(clean.stdout.strip().splitlines()[-1])
    assert out["answer"] == expected["answer"] and out["values"] == expected["values"]
    # A guess-free run records the kill's guesses nowhere: the killed run's hits are
    # visible only in its journal, as the tasks they became.
    assert out["hits"] == 0


def test_a_journal_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    calls: list[str] = []
    where = tmp_path / "no such dir" / "runs.db"
    with pytest.raises(plait.PlaitError, match="no such dir"):
        plait.ask("q?", _tools([]), model=_model(calls), journal=str(where))
    assert calls == []  # nothing was asked of the model


def test_tokens_a_tool_counts_are_journaled_and_replayed(spec: str) -> None:
    """A tool that calls a model itself counts its tokens (`add_tokens`): they are
    in its node's record, its journaled result and the run's total, and a replayed
    call keeps them."""

    @plait.tool
    def summarize(text: str) -> str:
        """Pretend to ask a model."""
        plait.add_tokens(len(text))
        return text[:3]

    @plait.workflow
    async def wf(a: str, b: str) -> list[str]:
        return [summarize(a), summarize(b)]

    first = plait.run(wf, "alpha", "beta-gamma", journal=spec, run_id="tok")
    assert [n.tokens for n in first.nodes] == [5, 10] and first.tokens == 15
    again = plait.run(wf, "alpha", "beta-gamma", journal=spec, run_id="tok")
    assert again.replayed == 2 and [n.tokens for n in again.nodes] == [5, 10]
    journal = open_journal(spec)
    try:
        state = journal.load("tok")
    finally:
        journal.close()
    assert state.run.tokens == 15
    assert sorted(r.tokens for r in state.results.values()) == [5, 10]
    with pytest.raises(plait.PlaitError, match="inside a tool"):
        plait.add_tokens(1)


@pytest.mark.timeout(120)
def test_a_question_with_a_side_effect_in_doubt_stops_until_allowed(
    spec: str, tmp_path: Path
) -> None:
    """Killed inside a call that is not idempotent: resuming the question stops
    with InDoubtError (the joiner is not asked to answer around it), runs nothing
    again, and stops again when asked again; with allow_rerun it finishes."""
    counter = tmp_path / "ran"
    killed = _child(spec, "doubt", counter, True, "--not-idempotent")
    assert killed.returncode == -9, killed.stderr[-2000:]
    before = _ran(counter)
    for _ in range(2):
        refused = _child(spec, "doubt", counter, False, "--not-idempotent")
        assert refused.returncode == 3, refused.stderr[-2000:]
        message = json.loads(refused.stdout.strip().splitlines()[-1])["in_doubt"]
        assert "slow" in message and "allow_rerun" in message
        assert _ran(counter) == before  # no planner, no lookup, no slow, no joiner
    done = _child(spec, "doubt", counter, False, "--not-idempotent", "--allow-rerun")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["answer"] == "a, b and c"
    assert _ran(counter) == before + collections.Counter({"tool slow": 1, "llm joiner": 1})


def test_a_react_question_replays_its_steps(spec: str) -> None:
    """ReAct's steps are LLM-call nodes too: asking again replays every step and
    every observation, and the model is not called."""
    steps: list[str] = []

    def script(messages: Sequence[Message]) -> str:
        steps.append("react")
        seen = "x!" in messages[-1].content  # the observation of the first action
        return 'Thought: done.\nAction: finish("x!")' if seen else \
            'Thought: look x up.\nAction: lookup("x")'

    ran: list[str] = []
    tools = _tools(ran)
    first = plait.ask("x?", tools, model=SimLLM(script, ttft=0.0, tps=5000), mode="react",
                      journal=spec, run_id="r1")
    assert first.text == "x!" and steps == ["react", "react"] and ran == ["x"]
    again = plait.ask("x?", tools, model=_silent_model(), mode="react", journal=spec,
                      run_id="r1")
    assert again.text == "x!" and ran == ["x"]
    assert [c.replayed for c in again.llm_calls] == [True, True]
