"""`plait ask`: tools from a module or a file, plain and live views, JSON, errors."""

from __future__ import annotations

import io
import json
import re
import shlex
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from plait.runtime import _events as ev
from plait.cli._app import app
from plait.cli._view import AskView, shorten
from plait.compiler import _records as rc
from plait.compiler._parser import PlanError
from plait.compiler._records import Decision
from plait.examples.tools import find

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


def entry(name: str) -> str:
    """What the bundled `search` returns for `name`."""
    found = find(name)
    assert found is not None
    return f"{found.name}: {found.text}"


def test_ask_with_the_default_tools(tmp_path):
    """Plain output: the answer alone on stdout; on stderr the plan, each task's
    value on one line as it finishes, the summary, and the commands to try next."""
    question = "Which is taller, Mount Everest or K2?"
    plan = '1. search("Mount Everest")\n2. search("K2")\n3. join()'
    result = runner.invoke(app, ["ask", question, "--model", sim_spec(tmp_path, plan)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Everest\n"
    err = result.stderr.splitlines()
    assert any(line.endswith('plan | 1. search("Mount Everest")') for line in err), err
    assert any(line.endswith('task 1 started: search("Mount Everest")') for line in err), err
    for number, name in ((1, "Mount Everest"), (2, "K2")):
        value = shorten(entry(name))
        assert len(value) <= 72 and "\n" not in value
        done = [ln for ln in err if re.search(rf"task {number} done in [\d.]+s -> ", ln)]
        assert len(done) == 1 and done[0].endswith(f"-> {value}"), err
    assert any("2 task(s): 2 done" in ln and "tokens" in ln for ln in err), err
    # The last lines: commands that run as printed (the question quoted), the
    # first after `next:`. The run is journaled (by default), so it can be shown.
    first = next(i for i, ln in enumerate(err) if ln.startswith("next:"))
    steps = [shlex.split(ln.removeprefix("next:"), comments=True) for ln in err[first:]]
    run_id = re.search(r"plait show (\S+)", err[first])
    assert run_id and steps[0] == ["plait", "show", run_id[1]], err
    assert steps[1:] == [["plait", "runs"],
                         ["plait", "ask", question, "--model", "openai:MODEL"]], err
    assert "OPENAI_BASE_URL" in err[-1]
    shown = runner.invoke(app, ["show", run_id[1]])
    assert shown.exit_code == 0 and "done" in shown.stdout, shown.output


def test_a_failed_task_shows_its_error_on_one_line(tmp_path):
    tools = tmp_path / "failing.py"
    tools.write_text(
        "import plait\n\n"
        "@plait.tool\n"
        "def boom(text: str) -> str:\n"
        '    """Fails, over two lines."""\n'
        '    raise RuntimeError(text + " went wrong\\nsee the log")\n'
    )
    plan = '1. boom("the fuse")\n2. join()'
    result = runner.invoke(app, ["ask", "Boom?", "--tools", str(tools),
                                 "--model", sim_spec(tmp_path, plan, "it failed")])
    assert result.exit_code == 0, result.output
    failed = [ln for ln in result.stderr.splitlines() if "task 1 failed" in ln]
    assert len(failed) == 1, result.stderr
    assert failed[0].endswith("task 1 failed: RuntimeError: the fuse went wrong see the log")
    assert "1 task(s): 1 failed" in result.stderr


def test_shorten():
    assert shorten("a\n  b\tc") == "a b c"
    assert shorten(8611.0) == "8611.0" and shorten("") == "''" and shorten(None) == "None"
    assert shorten(["x"] * 100, width=20) == "['x', 'x', 'x', '..."
    assert len(shorten("y" * 500)) == 72


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
    assert "replayed" not in first.output
    # The pointer to the run: a command that runs as printed.
    pointers = first.stderr.split("tokens (", 1)[1].splitlines()[1:]
    assert len(pointers) == 3 and pointers[0].startswith("next: "), first.stderr
    commands = [shlex.split(ln.removeprefix("next:"), comments=True) for ln in pointers]
    assert commands[:2] == [["plait", "show", "everest", "--journal", journal],
                            ["plait", "runs", "--journal", journal]]
    for command in commands[:2]:
        shown = runner.invoke(app, command[1:])
        assert shown.exit_code == 0 and "everest" in shown.stdout, shown.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stdout == "Everest\n"
    assert "2 LLM calls, 2 replayed from the journal" in again.stderr
    # The tasks were replayed too: marked, with their values.
    value = shorten(entry("K2"))
    assert re.search(rf"task 2 done \(replayed from the journal\) -> {re.escape(value)}\n",
                     again.stderr), again.stderr
    listed = runner.invoke(app, ["runs", "--journal", journal])
    row = next(ln for ln in listed.stdout.splitlines() if ln.startswith("everest"))
    assert "Which is taller, Mount Everest or K2?" in row and "ask:compiler" not in row
    resumed = runner.invoke(app, ["resume", "everest", "--journal", journal])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == "Everest\n"
    assert "2 LLM calls, 2 replayed from the journal" in resumed.stderr
    other = runner.invoke(app, ["resume", "everest", "--journal", journal,
                                "--tools", "plait.examples.fanout"], env={"COLUMNS": "250"})
    assert other.exit_code == 2, other.output  # not the tools it was asked with: named
    assert "asked with tools calculator, lookup, search" in other.output
    as_json = runner.invoke(app, ["resume", "everest", "--journal", journal, "--json"])
    assert [c["replayed"] for c in json.loads(as_json.stdout)["llm_calls"]] == [True, True]
    missing = runner.invoke(app, ["resume", "nope", "--journal", journal])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


def test_react_mode_from_the_cli(tmp_path):
    """Plain ReAct output is one line per step: thought | action -> observation."""
    path = tmp_path / "react.json"
    path.write_text(json.dumps([
        ("Thought: look it up, K2 is a mountain in the Karakoram on the border of Pakistan "
         'and China.\nAction: search("K2")'),
        'Thought: nothing to call.\nAction: weather("K2")',
        'Thought: done.\nAction: finish("8,611 m")',
    ]))
    result = runner.invoke(app, ["ask", "How high is K2?", "--mode", "react",
                                 "--model", f"sim:ttft=0,tps=2000,script={path}"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "8,611 m\n"
    steps = [ln.split("] ", 1)[1] for ln in result.stderr.splitlines() if "] step " in ln]
    thought = shorten("look it up, K2 is a mountain in the Karakoram on the border of "
                      "Pakistan and China.", 48)
    assert thought.endswith("...")
    assert steps == [
        f'step 1: {thought} | search("K2") -> {shorten(entry("K2"))}',
        'step 2: nothing to call. | weather("K2") -> not run',
        'step 3: done. | finish("8,611 m")',
    ], result.stderr
    assert "plan |" not in result.stderr and "task 1" not in result.stderr
    assert "3 step(s)" in result.stderr


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
    view = AskView(file=out, live=True)
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


def test_the_live_view_shows_values_errors_and_replays_on_a_terminal():
    """A terminal (a rich Console forced to one, into a StringIO): the table holds
    each task's value as it finishes, a failure's message, a replayed mark."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, highlight=False)
    view = AskView(file=out, live=True, console=console)
    t = time.perf_counter()
    with view:
        view(rc.PlanStarted(t, 0, "plan", 0))
        view(rc.PlanText(t, 0, '1. search("K2")\n2. fail("x")\n3. search("Everest")\n'))
        for number, call in ((1, 'search("K2")'), (2, 'fail("x")'), (3, 'search("Everest")')):
            view(rc.TaskDispatched(t, number, call.split("(")[0], call, number, ()))
            view(ev.NodeStarted("r", t, number, call.split("(")[0], 1))
        view(ev.NodeFinished("r", t + 0.2, 1, "search", 0.2, "K2: 8,611 m\nsecond line"))
        rows = {n: r["value"] for n, r in view.tasks.items()}
        assert rows == {1: "K2: 8,611 m second line", 2: "", 3: ""}  # shown as it finishes
        view(ev.NodeFailed("r", t + 0.3, 2, "fail", "RuntimeError: x"))
        view(ev.NodeFinished("r", t + 0.3, 3, "search", 0.0, "Mount Everest: 8,849 m",
                             replayed=True))
        frame = io.StringIO()
        Console(file=frame, width=140).print(view._render())
        live = frame.getvalue()
        assert "K2: 8,611 m second line" in live and "RuntimeError: x" in live
        assert re.search(r"3 +search\(\"Everest\"\) +replayed +Mount Everest: 8,849 m", live)
    text = out.getvalue()
    assert "\x1b[" in text  # drawn for a terminal
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    for shown in ("K2: 8,611 m second line", "RuntimeError: x", "Mount Everest: 8,849 m"):
        assert shown in final


def test_a_long_question_is_not_pasted_back_into_the_next_command(tmp_path):
    question = "Which is taller, Mount Everest or K2? " + "Please explain. " * 20
    plan = '1. search("K2")\n2. join()'
    result = runner.invoke(app, ["ask", question, "--model", sim_spec(tmp_path, plan)])
    assert result.exit_code == 0, result.output
    last = shlex.split(result.stderr.splitlines()[-1], comments=True)
    assert last == ["plait", "ask", "QUESTION", "--model", "openai:MODEL"], result.stderr


def test_ask_speculate_siblings_reports_its_guesses(tmp_path):
    """`--speculate siblings`: the same answer; the guesses in --json and in the
    summary line; an unknown speculator is a usage error."""
    question = "Which is taller, Mount Everest or K2?"
    plan = '1. search("Mount Everest")\n2. search("K2")\n3. join()'
    model = sim_spec(tmp_path, plan).replace("tps=2000", "tps=40")
    result = runner.invoke(app, ["ask", question, "--model", model, "--json", "--no-journal",
                                 "--speculate", "siblings"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["answer"] == "Everest"
    assert out["speculation"]["speculator"] == "siblings"
    assert out["speculation"]["hits"] == 2 and out["speculation"]["wasted"] == 0
    plain = runner.invoke(app, ["ask", question, "--model", model, "--no-journal",
                                "--speculate", "siblings"])
    assert plain.exit_code == 0 and "speculation (siblings): 2 hit(s)" in plain.stderr
    assert 'guess | search("K2")' in plain.stderr  # the live view shows each guess
    assert 'task 2 started: search("K2") (its guess, adopted)' in plain.stderr
    bad = runner.invoke(app, ["ask", question, "--model", model, "--speculate", "all"])
    assert bad.exit_code == 2 and "--speculate" in bad.output
