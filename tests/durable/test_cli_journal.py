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
from plait.cli._journal import default_journal
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
    assert "done" in row and "shout_all" in row and "test_cli_journal" not in row

    r = plait_cli("show", "cli1", "--journal", spec)
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if "shout(word=" in ln and " done " in ln]
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
    assert r.stdout == "['A', 'B']\n" and "2 replayed from the journal" in r.stderr
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
    assert "cannot shout b" in r.stderr
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
    assert "InDoubtError" in r.stderr and key[:12] in r.stderr and "--allow-rerun" in r.stderr
    assert CALLS["b"] == 0  # not run again

    r = plait_cli("resume", "cli3", "--journal", spec, "--allow-rerun", "--json")
    assert r.exit_code == 0, r.output
    assert last_json(r.stdout)["value"] == ["A", "B"]
    assert CALLS == {"a": 1, "b": 1}


def test_clear_errors(spec: str, tmp_path: Path) -> None:
    plait_cli("run", TARGET, "a", "--journal", spec, "--run-id", "cli4")
    r = plait_cli("show", "nope", "--journal", spec)
    assert r.exit_code == 2 and "no run 'nope'" in r.output, r.output
    r = plait_cli("resume", "nope", "--journal", spec)
    assert r.exit_code == 2 and "no run 'nope'" in r.output, r.output
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


# ---------------------------------------------------------------- damaged and missing journals

BIG = "w" * 400  # arguments past the inline limit: they go to the blob table


def _sql(spec: str, *statements: str) -> None:
    """Edit the journal's tables behind its back, as damage or a careless hand would."""
    if spec.startswith("postgresql"):
        import psycopg

        dsn, _, schema = spec.partition("?schema=")
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            for statement in statements:
                conn.execute(statement)
        return
    import sqlite3

    conn = sqlite3.connect(spec)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def _journaled(spec: str) -> None:
    r = plait_cli("run", TARGET, "a", BIG, "--journal", spec, "--run-id", "dmg")
    assert r.exit_code == 0, r.output


def _one_error_line(r: Any, *needles: str) -> None:
    assert r.exit_code == 2, r.output  # an uncaught exception (a traceback) exits 1
    assert "Traceback" not in r.output, r.output
    error = r.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and all(n in error for n in needles), r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error")] == [error]


@pytest.mark.parametrize("table, column", [
    ("runs", "arguments"), ("intents", "arguments"), ("results", "extra"), ("results", "value"),
])
def test_garbage_in_a_json_column_is_one_error_line(spec: str, table: str, column: str) -> None:
    _journaled(spec)
    _sql(spec, f"UPDATE {table} SET {column} = '{{garbage' WHERE {column} IS NOT NULL")
    with open_journal(spec) as j:
        where = j.location
    commands = [["show", "dmg"], ["resume", "dmg"]]
    if table == "runs":
        commands.append(["runs"])
    else:  # the listing reads only the runs table: it still works
        r = plait_cli("runs", "--journal", spec)
        assert r.exit_code == 0 and "dmg" in r.stdout, r.output
    for args in commands:
        r = plait_cli(*args, "--journal", spec)
        _one_error_line(r, f"error: journal {where}", "not valid JSON", "damaged")
    assert CALLS == {"a": 1, BIG: 1}  # nothing ran again


def test_a_missing_blob_or_bytes_that_are_not_text_are_one_error_line(tmp_path: Path) -> None:
    spec = str(tmp_path / "runs.db")
    _journaled(spec)
    damaged = tmp_path / "damaged.db"
    for statement, needle in [("DELETE FROM blobs", "blob that is missing"),
                              ("UPDATE results SET extra = x'00ff'", "not valid JSON")]:
        damaged.write_bytes(Path(spec).read_bytes())
        _sql(str(damaged), statement)
        for args in (["show", "dmg"], ["resume", "dmg"]):
            _one_error_line(plait_cli(*args, "--journal", str(damaged)), str(damaged), needle)


def test_a_truncated_or_foreign_file_is_one_error_line(tmp_path: Path) -> None:
    spec = tmp_path / "runs.db"
    _journaled(str(spec))
    whole = spec.read_bytes()
    for cut in (len(whole) // 2, 4096, 100):
        spec.write_bytes(whole[:cut])
        for args in (["runs"], ["show", "dmg"], ["resume", "dmg"], ["run", TARGET, "a"]):
            r = plait_cli(*args, "--journal", str(spec))
            _one_error_line(r, str(spec), "not a SQLite database, or it is corrupt")


def test_reading_commands_never_create_a_journal(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    default = Path(default_journal())  # in this test's own $XDG_DATA_HOME
    for args in (["runs"], ["show", "x"], ["resume", "x"]):
        r = plait_cli(*args)
        _one_error_line(r, f"no journal at {default} (the default)", "--journal",
                        "PLAIT_JOURNAL")
        r = plait_cli(*args, env={"PLAIT_JOURNAL": "elsewhere.db"})
        _one_error_line(r, f"no journal at {tmp_path / 'elsewhere.db'} (from $PLAIT_JOURNAL)")
        r = plait_cli(*args, "--journal", str(tmp_path / "sub" / "j.db"))
        _one_error_line(r, f"no journal at {tmp_path / 'sub' / 'j.db'}:")
        (tmp_path / "empty.db").touch()  # an empty file is no journal either, and stays empty
        _one_error_line(plait_cli(*args, "--journal", "empty.db"), "no journal at")
        assert (tmp_path / "empty.db").stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert not default.parent.exists()
    # A writing command creates one where asked; then the readers find it.
    r = plait_cli("run", TARGET, "a", "--run-id", "made", "--journal", "runs.db")
    assert r.exit_code == 0 and (tmp_path / "runs.db").is_file(), r.output
    r = plait_cli("runs", "--journal", "runs.db")
    assert r.exit_code == 0 and "made" in r.stdout, r.output
