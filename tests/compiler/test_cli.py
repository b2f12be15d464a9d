"""`plait ask`: tools from a module or a file, plain and live views, JSON, errors."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import plait.cli.ask as cli_ask
from plait import _events as ev
from plait.cli._app import app
from plait.compiler import _records as rc
from plait.compiler._parser import PlanError
from plait.compiler._records import Decision

runner = CliRunner()


def sim_spec(tmp_path: Path, plan: str, answer: str = "Everest") -> str:
    script = [
        {"match": "Results:", "reply": json.dumps({"action": "finish", "answer": answer})},
        {"match": "Question:", "reply": plan},
    ]
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    return f"sim:ttft=0,tps=2000,script={path}"


@pytest.fixture(autouse=True)
def fast_examples(monkeypatch):
    from plait.examples import tools

    monkeypatch.setattr(tools, "LATENCY", (0.01, 0.02))


def test_ask_with_the_default_tools(tmp_path):
    plan = '1. search("Mount Everest")\n2. search("K2")\n3. join()'
    result = runner.invoke(app, ["ask", "Which is taller, Mount Everest or K2?",
                                 "--model", sim_spec(tmp_path, plan)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert 'plan | 1. search("Mount Everest")' in out
    assert "task 1 started" in out and "task 2 done" in out
    assert "Everest\n" in result.stdout
    assert "2 task(s): 2 done" in result.stdout and "tokens" in result.stdout


def test_ask_with_tools_from_a_file_and_json(tmp_path):
    tools = tmp_path / "mytools.py"
    tools.write_text(
        "import plait\n\n"
        "@plait.tool\n"
        "def shout(text: str) -> str:\n"
        '    """Upper-case the text."""\n'
        "    return text.upper()\n"
    )
    plan = '1. shout("hi")\n2. shout("${1} there")\n3. join()'
    result = runner.invoke(app, ["ask", "Shout it", "--tools", str(tools), "--json",
                                 "--model", sim_spec(tmp_path, plan, "HI THERE")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["answer"] == "HI THERE"
    assert [t["value"] for t in data["tasks"]] == ["HI", "HI THERE"]


def test_ask_journaled_then_resumed_from_the_cli(tmp_path):
    """`--journal --run-id`: asking again replays the plan and the decision; `plait
    runs` lists the question; `plait resume` asks it again from the journal alone."""
    plan = '1. search("Mount Everest")\n2. search("K2")\n3. join()'
    journal = str(tmp_path / "runs.db")
    args = ["ask", "Which is taller, Mount Everest or K2?", "--model", sim_spec(tmp_path, plan),
            "--journal", journal, "--run-id", "everest"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "replayed" not in first.stdout
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "Everest\n" in again.stdout
    assert "2 LLM calls, 2 replayed from the journal" in again.stdout
    listed = runner.invoke(app, ["runs", "--journal", journal])
    row = next(ln for ln in listed.stdout.splitlines() if ln.startswith("everest"))
    assert "Which is taller, Mount Everest or K2?" in row and "ask:compiler" not in row
    resumed = runner.invoke(app, ["resume", "everest", "--journal", journal])
    assert resumed.exit_code == 0, resumed.output
    assert "Everest\n" in resumed.stdout
    assert "2 LLM calls, 2 replayed from the journal" in resumed.stdout
    other = runner.invoke(app, ["resume", "everest", "--journal", journal,
                                "--tools", "plait.examples.fanout"], env={"COLUMNS": "250"})
    assert other.exit_code == 2, other.output  # not the tools it was asked with: named
    assert "asked with tools calculator, lookup, search" in other.output
    as_json = runner.invoke(app, ["resume", "everest", "--journal", journal, "--json"])
    assert [c["replayed"] for c in json.loads(as_json.stdout)["llm_calls"]] == [True, True]
    missing = runner.invoke(app, ["resume", "nope", "--journal", journal])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


def test_react_mode_from_the_cli(tmp_path):
    path = tmp_path / "react.json"
    path.write_text(json.dumps([
        'Thought: look.\nAction: search("K2")',
        'Thought: done.\nAction: finish("8,611 m")',
    ]))
    result = runner.invoke(app, ["ask", "How high is K2?", "--mode", "react",
                                 "--model", f"sim:ttft=0,tps=2000,script={path}"])
    assert result.exit_code == 0, result.output
    assert "8,611 m" in result.stdout and "step(s)" in result.stdout


def test_bad_options(tmp_path):
    assert runner.invoke(app, ["ask", "q", "--mode", "magic"]).exit_code != 0
    assert runner.invoke(app, ["ask", "q", "--tools", str(tmp_path / "none.py")]).exit_code != 0
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    result = runner.invoke(app, ["ask", "q", "--tools", str(empty)])
    assert result.exit_code != 0 and "no plait tools" in result.output
    result = runner.invoke(app, ["ask", "q", "--model", "nonsense:x"])
    assert result.exit_code == 2 and "unknown model spec" in result.output


def test_the_live_view_renders():
    out = io.StringIO()
    view = cli_ask.AskView(file=out, live=True)
    t = time.perf_counter()
    with view:
        view(rc.PlanStarted(t, 0, "plan", 0))
        view(rc.PlanText(t, 0, '1. search("a")\n2. sea'))
        view(ev.NodeStarted("r", t, 0, "search", 1))  # before its TaskDispatched
        view(rc.TaskDispatched(t, 1, "search", 'search("a")', 0, ()))
        view(rc.PlanProblem(t, PlanError(2, 2, "syntax", "bad", "2. sea")))
        view(ev.NodeFinished("r", t + 0.5, 0, "search", 0.5))
        view(rc.PlanFinished(t, 0, 1, 1))
        view(rc.JoinerStarted(t, 0))
        view(rc.Decided(t, Decision("finish", "yes")))
        assert view.tasks[1]["state"] == "done"
    text = out.getvalue()
    assert 'search("a")' in text and "done" in text
