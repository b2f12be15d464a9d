"""The journal from the shell: `plait run --journal --run-id`, `plait runs`,
`plait show RUN_ID`, `plait resume RUN_ID [--allow-rerun]`.

In-process through typer's CliRunner (fast), and once through a real `plait`
process per journal backend.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import plait
from plait.cli import app
from plait.journal import Intent, RunRecord, open_journal

from . import crash_child as cc

pytestmark = pytest.mark.timeout(60)

TARGET = f"{__name__}:shout_all"
CALLS: collections.Counter[str] = collections.Counter()
FAIL: set[str] = set()
KEYS: dict[str, str] = {}  # word -> node key of its shout call


@pytest.fixture(autouse=True)
def _clean() -> None:
    CALLS.clear()
    FAIL.clear()
    KEYS.clear()


@plait.tool
async def shout(word: str) -> str:
    CALLS[word] += 1
    KEYS[word] = plait.node_key()
    if word in FAIL:
        raise RuntimeError(f"cannot shout {word}")
    return word.upper()


@plait.workflow
async def shout_all(*words: str) -> list[str]:
    refs = [shout(w) for w in words]
    return [await r for r in refs]


def plait_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def last_json(text: str) -> dict[str, Any]:
    line = [ln for ln in text.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def test_run_runs_show_resume(spec: str) -> None:
    r = plait_cli("run", TARGET, "a", "b", "--journal", spec, "--run-id", "cli1", "--json")
    assert r.exit_code == 0, r.output
    report = last_json(r.stdout)
    assert report["run_id"] == "cli1" and report["value"] == ["A", "B"]
    assert report["replayed"] == 0 and CALLS == {"a": 1, "b": 1}

    r = plait_cli("runs", "--journal", spec)
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.stdout.splitlines() if "cli1" in ln)
    assert "done" in row and "shout_all" in row

    r = plait_cli("show", "cli1", "--journal", spec)
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if "│ shout" in ln and "done" in ln]
    assert len(rows) == 2, r.stdout
    assert all(KEYS[w][:12] in r.stdout for w in "ab")

    r = plait_cli("resume", "cli1", "--journal", spec, "--json")
    assert r.exit_code == 0, r.output
    report = last_json(r.stdout)
    assert report["value"] == ["A", "B"] and report["replayed"] == 2
    assert CALLS == {"a": 1, "b": 1}

    # `plait run` with the same run id is a resume too; text output says what was replayed.
    r = plait_cli("run", TARGET, "a", "b", "--journal", spec, "--run-id", "cli1")
    assert r.exit_code == 0, r.output
    assert "['A', 'B']" in r.stdout and "2 replayed from the journal" in r.stdout
    assert CALLS == {"a": 1, "b": 1}


def test_journal_from_the_environment(spec: str) -> None:
    r = plait_cli("run", TARGET, "x", "--journal", spec, "--run-id", "envrun")
    assert r.exit_code == 0, r.output
    r = plait_cli("runs", env={"PLAIT_JOURNAL": spec})
    assert r.exit_code == 0 and "envrun" in r.stdout, r.output
    r = plait_cli("resume", "envrun", "--json", env={"PLAIT_JOURNAL": spec})
    assert r.exit_code == 0 and last_json(r.stdout)["replayed"] == 1, r.output


def test_failed_run_then_resume(spec: str) -> None:
    FAIL.add("b")
    r = plait_cli("run", TARGET, "a", "b", "--journal", spec, "--run-id", "cli2",
                  "--on-error", "continue")
    assert r.exit_code == 1, r.output
    assert "cannot shout b" in r.stdout
    r = plait_cli("runs", "--journal", spec)
    assert "failed" in next(ln for ln in r.stdout.splitlines() if "cli2" in ln)
    r = plait_cli("show", "cli2", "--journal", spec)
    failed = [ln for ln in r.stdout.splitlines() if "failed" in ln and KEYS["b"][:12] in ln]
    assert failed and "RuntimeError" in failed[0], r.stdout
    FAIL.clear()
    r = plait_cli("resume", "cli2", "--journal", spec, "--json")
    assert r.exit_code == 0, r.output
    report = last_json(r.stdout)
    assert report["status"] == "done" and report["value"] == ["A", "B"]
    assert report["replayed"] == 1 and CALLS == {"a": 1, "b": 2}
    r = plait_cli("runs", "--journal", spec)
    assert "done" in next(ln for ln in r.stdout.splitlines() if "cli2" in ln)


def _journal_in_doubt(spec: str, run_id: str, words: list[str], doubtful: str) -> str:
    """A run as if it crashed inside shout(doubtful): an intent, no result."""
    plait.run(shout_all, *words)  # unjournaled: learn the keys
    key = KEYS[doubtful]
    CALLS.clear()
    j = open_journal(spec)
    try:
        j.create_run(RunRecord(run_id, shout_all.name, {"args": words, "kwargs": {}}))
        j.write([Intent(run_id, key, "shout", {"word": doubtful})])
    finally:
        j.close()
    return key


def test_resume_with_a_call_in_doubt(spec: str) -> None:
    key = _journal_in_doubt(spec, "cli3", ["a", "b"], "b")
    r = plait_cli("show", "cli3", "--journal", spec)
    assert r.exit_code == 0
    assert "in doubt" in next(ln for ln in r.stdout.splitlines() if key[:12] in ln)

    r = plait_cli("resume", "cli3", "--journal", spec)
    assert r.exit_code == 1, r.output
    assert "InDoubtError" in r.stdout and key[:12] in r.stdout and "--allow-rerun" in r.stdout
    assert CALLS["b"] == 0  # not run again

    r = plait_cli("resume", "cli3", "--journal", spec, "--allow-rerun", "--json")
    assert r.exit_code == 0, r.output
    assert last_json(r.stdout)["value"] == ["A", "B"]
    assert CALLS == {"a": 1, "b": 1}


def test_clear_errors(spec: str, tmp_path: Path) -> None:
    r = plait_cli("show", "nope", "--journal", spec)
    assert r.exit_code == 2 and "no run 'nope'" in r.output, r.output
    r = plait_cli("resume", "nope", "--journal", spec)
    assert r.exit_code == 2 and "no run 'nope'" in r.output, r.output
    plait_cli("run", TARGET, "a", "--journal", spec, "--run-id", "cli4")
    r = plait_cli("run", TARGET, "z", "--journal", spec, "--run-id", "cli4")
    assert r.exit_code == 2 and "cannot be resumed as" in r.output, r.output
    assert CALLS == {"a": 1}
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"garbage" * 1000)
    for args in (["runs"], ["show", "x"], ["resume", "x"], ["run", TARGET, "a"]):
        r = plait_cli(*args, "--journal", str(bad))
        assert r.exit_code == 2, (args, r.output)
        assert "not a SQLite database" in r.output, (args, r.output)
        assert "Traceback" not in r.output


def test_real_process(spec: str, tmp_path: Path) -> None:
    """The `plait` program itself, as a user runs it."""
    env = cc.child_env()
    out = cc.run_child(cc.cli_command("run", TARGET, "p", "q", "--journal", spec,
                                      "--run-id", "proc", "--json"), env)
    assert out.returncode == 0, out.describe()
    assert last_json(out.stdout)["value"] == ["P", "Q"]
    out = cc.run_child(cc.cli_command("runs", "--journal", spec), {**env, "COLUMNS": "250"})
    assert out.returncode == 0 and "proc" in out.stdout and "done" in out.stdout, out.describe()
    out = cc.run_child(cc.cli_command("resume", "proc", "--journal", spec, "--json"), env)
    assert out.returncode == 0, out.describe()
    assert last_json(out.stdout)["replayed"] == 2
    out = cc.run_child(cc.cli_command("show", "nope", "--journal", spec), env)
    assert out.returncode == 2 and "no run 'nope'" in out.stderr, out.describe()
