"""`plait show RUN` and `plait runs` say what happened, from a real journal.

Runs are real: a workflow through `plait run` (a retried call, a failed call, a
long value), a question through `plait.ask` with plait's scripted model (`SimLLM`),
journaled in a real SQLite file (and a PostgreSQL schema for the workflow). The
CLI is invoked in-process through typer's CliRunner: not a terminal, so the
output is plain lines, as in a pipe or a CI log.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import plait
from plait.cli import app
from plait.llm import Message, SimLLM

pytestmark = pytest.mark.timeout(60)

TARGET = f"{__name__}:chores"
TRIES: collections.Counter[str] = collections.Counter()
BROKEN: set[str] = set()
LONG = "line one\nline two " + "x" * 300 + " THE END"


@pytest.fixture(autouse=True)
def _clean() -> None:
    TRIES.clear()
    BROKEN.clear()


@plait.tool(retries=2, backoff=0.0, jitter=0.0)
def flaky(word: str) -> str:
    """Fails twice, then works: three attempts."""
    TRIES[word] += 1
    if TRIES[word] < 3:
        raise ConnectionError(f"try {TRIES[word]} of {word} failed")
    return word.upper()


@plait.tool
def report(text: str) -> str:
    """A value longer than a line."""
    if "report" in BROKEN:
        raise RuntimeError("the printer is on fire")
    return f"{text}: {LONG}"


@plait.workflow
async def chores(word: str) -> list[str]:
    shouted = flaky(word)
    return [await shouted, await report(shouted)]


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def show_json(run_id: str, journal: str) -> dict[str, Any]:
    r = cli("show", run_id, "--journal", journal, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def line_with(text: str, *needles: str) -> str:
    lines = [ln for ln in text.splitlines() if all(n in ln for n in needles)]
    assert len(lines) == 1, (needles, text)
    return lines[0]


def test_a_workflow_run_its_retries_errors_values_and_replays(spec: str) -> None:
    BROKEN.add("report")
    r = cli("run", TARGET, "hi", "--journal", spec, "--run-id", "w1", "--on-error", "continue")
    assert r.exit_code == 1, r.output

    listed = cli("runs", "--journal", spec)
    assert listed.exit_code == 0, listed.output
    row = line_with(listed.stdout, "w1 ")
    # The workflow's own name, not the module it was loaded from.
    assert row.split()[1] == "failed" and row.rstrip().endswith("chores")
    assert __name__ not in row and row.split()[5] == "2"  # calls

    shown = cli("show", "w1", "--journal", spec)
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "workflow  chores" in out and "RuntimeError: the printer is on fire" in out
    flaky_row = line_with(out, 'flaky(word="hi")')
    assert flaky_row.split()[1:4] == ["flaky", "done", "3"]  # tool, state, attempts
    assert flaky_row.rstrip().endswith('-> "HI"')
    failed_row = line_with(out, "report(text=$1)")
    assert failed_row.split()[2] == "failed"
    assert "-> error: RuntimeError: the printer is on fire" in failed_row

    data = show_json("w1", spec)
    run = data["run"]
    assert (run["run_id"], run["what"], run["status"], run["calls"]) == ("w1", "chores", "failed", 2)
    assert run["entry"].endswith(":chores")
    # The options the run was given are part of what happened (a resume keeps them).
    assert run["arguments"] == {"args": ["hi"], "kwargs": {},
                                "options": {"max_concurrency": None, "on_error": "continue",
                                            "executor": "local"}}
    assert run["error"] and run["duration"] > 0 and run["finished_at"] >= run["started_at"]
    assert data["question"] is None
    first, second = data["calls"]
    assert (first["n"], first["tool"], first["state"], first["attempts"]) == (1, "flaky", "done", 3)
    assert first["value"] == "HI" and first["error"] is None and first["session"] == 1
    assert second["arguments"] == {"text": {"$ref": 1}}  # the upstream call, by number
    assert second["error"] == "RuntimeError: the printer is on fire" and second["value"] is None
    assert {c["replayed"] for c in data["calls"]} == {False}

    # Fixed and resumed: the finished call is replayed, the failed one runs again.
    BROKEN.clear()
    r = cli("resume", "w1", "--journal", spec)
    assert r.exit_code == 0, r.output
    data = show_json("w1", spec)
    first, second = data["calls"]
    assert data["run"]["status"] == "done" and data["run"]["error"] is None
    assert (first["session"], first["replayed"]) == (1, True)
    assert (second["session"], second["replayed"], second["state"]) == (2, False, "done")
    assert second["value"] == f"HI: {LONG}"  # JSON values in full
    assert TRIES == {"hi": 3}

    out = cli("show", "w1", "--journal", spec).stdout
    assert "1 replayed" in line_with(out, 'flaky(word="hi")')
    assert "sessions 2 (resumed 1x)" in out
    # One line by default: the long value is cut; --full shows all of it.
    report_row = line_with(out, "report(text=$1)")
    assert '-> "HI: line one\\nline two xxx' in report_row and report_row.endswith("...")
    assert "THE END" not in out
    full = cli("show", "w1", "--journal", spec, "--full").stdout
    assert "THE END" in full and "line two " + "x" * 300 in full


def test_runs_json_lists_every_run_with_its_fields(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    assert cli("run", TARGET, "a", "--journal", journal, "--run-id", "j1").exit_code == 0
    plait.ask("How tall is it?", [lookup], model=_model(), journal=journal, run_id="j2")
    r = cli("runs", "--journal", journal, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["journal"] == journal
    by_id = {run["run_id"]: run for run in data["runs"]}
    assert set(by_id) == {"j1", "j2"}
    fields = {"run_id", "what", "entry", "status", "started_at", "finished_at", "duration",
              "calls", "tokens", "cost", "cost_saved", "currency", "cost_estimated",
              "cost_unpriced", "replayed", "error"}
    assert all(set(run) == fields for run in data["runs"])
    # The simulated model costs nothing (tests/cost prices it).
    assert (by_id["j2"]["cost"], by_id["j2"]["cost_saved"], by_id["j2"]["currency"]) == (
        0.0, 0.0, "USD")
    assert (by_id["j1"]["what"], by_id["j1"]["calls"], by_id["j1"]["tokens"]) == ("chores", 2, 0)
    assert by_id["j2"]["what"] == "How tall is it?" and by_id["j2"]["entry"] == "ask:compiler"
    assert by_id["j2"]["calls"] == 7 and by_id["j2"]["tokens"] > 0  # 2 plans, 3 tasks, 2 joins
    assert by_id["j2"]["status"] == "done"
    # Plain: the question, shortened to fit a line.
    long_q = "Which of these is the tallest: " + ", ".join(f"peak {i}" for i in range(30)) + "?"
    plait.ask(long_q, [lookup], model=_model(), journal=journal, run_id="j3")
    row = line_with(cli("runs", "--journal", journal).stdout, "j3 ")
    assert "Which of these is the tallest: peak 0" in row and row.endswith("...")


# ---------------------------------------------------------------- questions


@plait.tool
def lookup(entity: str) -> str:
    """Look an entity up."""
    if entity == "nowhere":
        raise LookupError("no entry for nowhere")
    return f"{entity} is {len(entity) * 1000} m tall"


PLAN_1 = 'Thought: look both up\n1. lookup("Everest")\n2. lookup("nowhere")\n3. join()'
PLAN_2 = '4. lookup("K2")\n5. join()'
REPLAN = '{"action": "replan", "answer": "nowhere has no entry; try K2"}'
FINISH = '{"action": "finish", "answer": "Everest is taller than K2"}'


def _role(messages: Sequence[Message]) -> str:
    if "Finish:" in messages[0].content:
        return "joiner"
    if "Observation" in messages[0].content:
        return "react"
    return "replan" if "Results of the previous plan" in messages[-1].content else "plan"


def _model(replies: dict[str, list[str]] | None = None) -> SimLLM:
    queues = replies or {"plan": [PLAN_1], "replan": [PLAN_2], "joiner": [REPLAN, FINISH]}
    queues = {k: list(v) for k, v in queues.items()}

    def script(messages: Sequence[Message]) -> str:
        queue = queues[_role(messages)]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return SimLLM(script, ttft=0.0, tps=5000)


def test_a_question_reads_as_a_transcript(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    answer = plait.ask("Which is taller, Everest or K2?", [lookup], model=_model(),
                       journal=journal, run_id="q1")
    assert answer.text == "Everest is taller than K2"

    r = cli("show", "q1", "--journal", journal)
    assert r.exit_code == 0, r.output
    out = r.stdout
    # In order: the question, plan 1 and its tasks, the replan, plan 2, its task, the answer.
    expected = [
        "question: Which is taller, Everest or K2?",
        "plan 1 (#1 planner):",
        "    Thought: look both up",
        '    1. lookup("Everest")',
        'task #2 lookup(entity="Everest") -> "Everest is 7000 m tall"',
        'task #3 lookup(entity="nowhere") -> error: LookupError: no entry for nowhere',
        "decision (#4 joiner): replan: nowhere has no entry; try K2",
        "plan 2 (#5 planner):",
        '    4. lookup("K2")',
        'task #6 lookup(entity="K2") -> "K2 is 2000 m tall"',
        "decision (#7 joiner): finish: Everest is taller than K2",
        "answer: Everest is taller than K2",
    ]
    at = [out.find(line) for line in expected]
    assert -1 not in at and at == sorted(at), out
    assert "tokens" in out and "calls 7" in out

    data = show_json("q1", journal)
    q = data["question"]
    assert (q["question"], q["mode"], q["answer"]) == (
        "Which is taller, Everest or K2?", "compiler", "Everest is taller than K2")
    assert [s["kind"] for s in q["steps"]] == [
        "plan", "task", "task", "decision", "plan", "task", "decision"]
    assert q["steps"][0]["text"] == PLAN_1 and q["steps"][4]["text"] == PLAN_2
    assert q["steps"][1]["value"] == "Everest is 7000 m tall"
    assert q["steps"][2]["error"] == "LookupError: no entry for nowhere"
    assert q["steps"][3]["action"] == "replan"
    llm = [c for c in data["calls"] if c["tool"] in ("planner", "joiner")]
    assert all(c["tokens"] > 0 and c["value"] for c in llm)  # values (the text) in full
    assert all(c["record"]["prompt_tokens"] + c["record"]["completion_tokens"] == c["tokens"]
               and c["record"]["ttft"] is not None for c in llm)  # the call's own record
    assert sum(c["tokens"] for c in data["calls"]) == data["run"]["tokens"] == answer.tokens


def test_a_react_question_shows_its_steps_and_finish(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    steps = ['Thought: I need Everest\nAction: lookup("Everest")',
             'Thought: I know it\nAction: finish("Everest is 7000 m tall")']
    answer = plait.ask("How tall is Everest?", [lookup], model=_model({"react": steps}),
                       mode="react", journal=journal, run_id="r1")
    assert answer.text == "Everest is 7000 m tall"
    out = cli("show", "r1", "--journal", journal).stdout
    expected = ["question: How tall is Everest?", "step 1 (#1 react):",
                '    Action: lookup("Everest")',
                'task #2 lookup(entity="Everest") -> "Everest is 7000 m tall"',
                "step 2 (#3 react):", '    Action: finish("Everest is 7000 m tall")',
                "answer: Everest is 7000 m tall"]
    at = [out.find(line) for line in expected]
    assert -1 not in at and at == sorted(at), out
    assert show_json("r1", journal)["question"]["answer"] == "Everest is 7000 m tall"


def test_a_failed_question_shows_its_error_and_no_answer(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")

    def script(messages: Sequence[Message]) -> str:
        raise RuntimeError("the model is down")

    with pytest.raises(Exception, match="the model is down"):
        plait.ask("Anyone there?", [lookup], model=SimLLM(script), journal=journal,
                  run_id="f1")
    out = cli("show", "f1", "--journal", journal).stdout
    assert "question  Anyone there?" in out and "answer: (none)" in out
    assert "plan 1 (#1 planner):\n    failed: RuntimeError: the model is down\n" in out
    assert "failed" in line_with(out, "planner(")
    assert show_json("f1", journal)["question"]["answer"] is None


def test_secrets_in_values_and_the_journal_dsn_never_show(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    dsn = "postgresql://plait:hunter2@db.example/prod"
    assert cli("run", TARGET, dsn, "--journal", journal, "--run-id", "s1").exit_code == 0
    for args in (["show", "s1"], ["show", "s1", "--json"], ["show", "s1", "--full"],
                 ["runs", "--json"]):
        out = cli(*args, "--journal", journal).stdout
        assert "hunter2" not in out.lower(), args
        if args[0] == "show":
            assert "plait:***@db.example" in out, args


def test_on_a_terminal_the_same_story_in_panels_and_tables(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    plait.ask("Which is taller, Everest or K2?", [lookup], model=_model(), journal=journal,
              run_id="t1")
    r = CliRunner().invoke(app, ["show", "t1", "--journal", journal],
                           env={"COLUMNS": "200", "FORCE_COLOR": "1", "NO_COLOR": ""})
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "\x1b[" in out  # drawn for a terminal, not plain lines
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "─ question ─" in out and "─ plan 1 (#1 planner) ─" in out and "─ answer ─" in out
    assert "Everest is taller than K2" in out and "┃ attempts ┃" in out
    assert "LookupError: no entry for nowhere" in out
    listed = CliRunner().invoke(app, ["runs", "--journal", journal],
                                env={"COLUMNS": "200", "FORCE_COLOR": "1"}).stdout
    listed = re.sub(r"\x1b\[[0-9;]*m", "", listed)
    assert "┃ what" in listed and "Which is taller, Everest or K2?" in listed
