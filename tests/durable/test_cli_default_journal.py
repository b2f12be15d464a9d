"""Every CLI run is journaled: to the per-user journal by default (in the test's own
$XDG_DATA_HOME, see tests/conftest.py), to $PLAIT_JOURNAL when set, to nothing with
--no-journal; and a resume keeps the run's options. In-process (typer's
CliRunner) with real SQLite files and the simulated model.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import plait
from plait.cli import app
from plait.cli._journal import default_journal
from plait.journal import open_journal

pytestmark = pytest.mark.timeout(60)

TARGET = f"{__name__}:naps"
CALLS: collections.Counter[int] = collections.Counter()
FAIL: set[int] = set()
IN_FLIGHT = {"now": 0, "most": 0}

TOOLS = '''
import plait

@plait.tool
def search(entity: str) -> str:
    """Look an entity up."""
    return entity + ": 8,000 m"
'''
PLAN = '1. search("Everest")\n2. search("K2")\n3. join()'


@pytest.fixture(autouse=True)
def _clean() -> None:
    CALLS.clear()
    FAIL.clear()
    IN_FLIGHT.update(now=0, most=0)


@plait.tool
async def nap(i: int) -> int:
    CALLS[i] += 1
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["most"] = max(IN_FLIGHT["most"], IN_FLIGHT["now"])
    await asyncio.sleep(0.01)
    IN_FLIGHT["now"] -= 1
    if i in FAIL:
        raise RuntimeError(f"nap {i} failed")
    return i


@plait.workflow
async def naps(n: int) -> int:
    # Not awaited: a failed nap does not fail the body, so with on_error=continue
    # every nap runs (with "stop", none after the first failure starts).
    for i in range(n):
        nap(i)
    return n


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def run_id_of(result: Any) -> str:
    return json.loads(result.stdout.strip().splitlines()[-1])["run_id"]


def runs_in(spec: str | Path) -> list[str]:
    with open_journal(str(spec)) as j:
        return sorted(r.run_id for r in j.list_runs())


def sim_model(tmp_path: Path, joiner: dict[str, Any]) -> str:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"match": "Results:", **joiner},
                                  {"match": "Question:", "reply": PLAN}]))
    return f"sim:ttft=0,tps=2000,script={script}"


def test_the_default_journal_from_nothing(tmp_path: Path) -> None:
    """No flag, no $PLAIT_JOURNAL: `run` creates the per-user journal (and its
    directory); `runs`, `show`, `resume` find it; --no-journal writes nothing."""
    default = Path(default_journal())
    assert default == Path(os.environ["XDG_DATA_HOME"]) / "plait" / "journal.db"
    assert not default.parent.exists()
    plait.run(naps, 2)  # the Python API journals only when asked
    assert not default.parent.exists()
    r = cli("run", TARGET, "2", "--no-journal")
    assert r.exit_code == 0 and not default.parent.exists(), r.output
    r = cli("ask", "Which is taller?", "--no-journal", "--tools", str(_tools(tmp_path)),
            "--model", sim_model(tmp_path, {"reply": '{"action": "finish", "answer": "K2"}'}))
    assert r.exit_code == 0 and not default.parent.exists(), r.output

    r = cli("run", TARGET, "2", "--json")
    assert r.exit_code == 0, r.output
    run_id = run_id_of(r)
    assert default.is_file() and runs_in(default) == [run_id]
    listed = cli("runs")
    assert listed.exit_code == 0 and run_id in listed.stdout, listed.output
    shown = cli("show", run_id)
    rows = [ln.split() for ln in shown.stdout.splitlines()]
    assert shown.exit_code == 0, shown.output
    assert [row[1:4] for row in rows if row[1:2] == ["nap"]] == [["nap", "done", "1"]] * 2, rows
    resumed = cli("resume", run_id, "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["replayed"] == 2
    assert CALLS == {0: 3, 1: 3}  # two unjournaled runs and this one; the resume ran none

    r = cli("run", TARGET, "1", "--no-journal")
    assert r.exit_code == 0 and runs_in(default) == [run_id]
    r = cli("run", TARGET, "1", "--no-journal", "--journal", str(tmp_path / "x.db"))
    assert r.exit_code == 2 and r.stderr.startswith("error: --journal and --no-journal")


def _tools(tmp_path: Path) -> Path:
    path = tmp_path / "mytools.py"
    path.write_text(TOOLS)
    return path


def test_plait_journal_is_honoured_by_every_command(tmp_path: Path) -> None:
    spec = str(tmp_path / "from-env.db")
    env = {"PLAIT_JOURNAL": spec}
    r = cli("run", TARGET, "2", "--json", env=env)
    assert r.exit_code == 0, r.output
    workflow_run = run_id_of(r)
    r = cli("ask", "Which is taller?", "--json", "--tools", str(_tools(tmp_path)),
            "--model", sim_model(tmp_path, {"reply": '{"action": "finish", "answer": "K2"}'}),
            env=env)
    assert r.exit_code == 0, r.output
    question = runs_in(spec)
    question.remove(workflow_run)
    assert len(question) == 1
    listed = cli("runs", env=env)
    assert workflow_run in listed.stdout and question[0] in listed.stdout, listed.output
    for run_id in (workflow_run, question[0]):
        assert cli("show", run_id, env=env).exit_code == 0
        resumed = cli("resume", run_id, env=env)
        # A workflow's value, like a question's answer, is alone on stdout; the
        # summary is on stderr.
        assert resumed.exit_code == 0 and "replayed from the journal" in resumed.stderr, \
            resumed.output
    assert not Path(default_journal()).parent.exists()  # the default was never used
    # --journal wins over the environment.
    other = str(tmp_path / "given.db")
    r = cli("run", TARGET, "1", "--journal", other, "--json", env=env)
    assert r.exit_code == 0 and runs_in(other) == [run_id_of(r)]
    assert cli("resume", run_id_of(r), "--journal", other, env=env).exit_code == 0
    assert cli("resume", run_id_of(r), env=env).exit_code == 2  # not in $PLAIT_JOURNAL


def test_a_resume_keeps_the_runs_options(tmp_path: Path) -> None:
    """--max-concurrency 1 and --on-error continue, kept: on resume the failed calls
    run again one at a time, all of them although the first fails again."""
    FAIL.update({0, 1, 2, 3})
    r = cli("run", TARGET, "4", "--max-concurrency", "1", "--on-error", "continue", "--json")
    assert r.exit_code == 1 and CALLS == {0: 1, 1: 1, 2: 1, 3: 1}, r.output
    assert IN_FLIGHT["most"] == 1
    run_id = run_id_of(r)
    FAIL.intersection_update({0})
    IN_FLIGHT["most"] = 0
    r = cli("resume", run_id, "--json")
    assert r.exit_code == 1, r.output
    assert CALLS == {0: 2, 1: 2, 2: 2, 3: 2}  # on_error=continue: not stopped at nap 0
    assert IN_FLIGHT["most"] == 1  # max_concurrency=1
    FAIL.clear()
    r = cli("resume", run_id, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["value"] == 4
    assert CALLS == {0: 3, 1: 2, 2: 2, 3: 2}


def test_a_question_resumes_with_its_tools_file_and_options(tmp_path: Path) -> None:
    """A question asked with --tools FILE --max-replans 0 --timeout 1 that times out:
    the printed command (no --journal, no --tools) works verbatim and keeps the
    timeout; once the model answers, it resumes to the answer."""
    tools = _tools(tmp_path)
    model = sim_model(tmp_path, {"fault": {"hang": True}})
    r = cli("ask", "Which is taller?", "--tools", str(tools), "--model", model,
            "--max-replans", "0", "--timeout", "1")
    assert r.exit_code == 124, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no answer within 1s (--timeout); resume run "), last
    command = last.split(" with: ", 1)[1]
    argv = shlex.split(command)
    assert argv[:2] == ["plait", "resume"] and len(argv) == 3, command
    with open_journal(default_journal()) as j:
        options = j.get_run(argv[2]).arguments["options"]
    assert options["max_replans"] == 0 and options["timeout"] == 1
    assert options["tools_module"]["file"] == str(tools)

    again = cli(*argv[1:])  # still hanging: the kept timeout ends it
    assert again.exit_code == 124, again.output
    assert again.stderr.strip().splitlines()[-1] == last
    sim_model(tmp_path, {"reply": '{"action": "finish", "answer": "Everest"}'})
    done = cli(*argv[1:])
    assert done.exit_code == 0, done.output
    assert done.stdout == "Everest\n"
    assert "2 LLM calls, 1 replayed from the journal" in done.stderr
    # The tools file gone: the resume says what to pass.
    tools.unlink()
    gone = cli(*argv[1:])
    assert gone.exit_code == 2 and "pass --tools" in gone.stderr, gone.output
