"""`plait run module:workflow args` in a real subprocess (not a terminal: plain lines)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plait.cli import app

WORKFLOW = textwrap.dedent(
    """
    import asyncio
    import plait

    @plait.tool
    async def square(x: int) -> int:
        await asyncio.sleep(0.05)
        return x * x

    @plait.tool
    async def fail(x: int) -> int:
        raise ValueError(f"no {x}")

    @plait.workflow
    async def total(n: int):
        parts = [square(i) for i in range(n)]
        return sum([await p for p in parts])

    @plait.workflow
    async def broken():
        return await fail(square(2))

    not_a_workflow = 3
    """
)


def plait_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from plait.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_prints_value_timings_and_plain_progress(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(WORKFLOW)
    proc = plait_cli("run", "wf.py:total", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "14"  # 0 + 1 + 4 + 9: the argument was parsed as JSON
    assert proc.stdout == "14\n"  # the value alone: `$(plait run ...)` captures it
    assert "4 calls in" in proc.stderr and "critical path" in proc.stderr
    # Not a terminal: one plain line per finished node, then a summary.
    done = [line for line in proc.stderr.splitlines() if " square done in " in line]
    assert len(done) == 4
    assert "4/4 done" in proc.stderr  # the progress line, before the summary


def test_run_json_output(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(WORKFLOW)
    proc = plait_cli("run", "wf.py:total", "3", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["value"] == 5 and data["status"] == "done"
    assert [n["state"] for n in data["nodes"]] == ["done"] * 3


def test_run_failure_exits_1_and_names_the_error(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(WORKFLOW)
    proc = plait_cli("run", "wf.py:broken", cwd=tmp_path)
    assert proc.returncode == 1
    assert "ValueError: no 4" in proc.stderr and proc.stdout == ""
    assert "fail failed" in proc.stderr


def test_run_bad_targets_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "wf.py").write_text(WORKFLOW)
    for target, message in [
        ("wf.py:nope", "has no attribute 'nope'"),
        ("wf.py:not_a_workflow", "is not a @plait.workflow"),
        ("missing.py:x", "no such file"),
        ("no_colon", "expected module:name"),
    ]:
        proc = plait_cli("run", target, cwd=tmp_path)
        assert proc.returncode == 2, target
        assert message in proc.stderr, (target, proc.stderr)
        assert "Traceback" not in proc.stderr


BROKEN_MODULES = {
    # name: (source, a line of the user's traceback, the error)
    "raises": ('import plait\n\n\ndef helper():\n    raise RuntimeError("boom at import")\n\n\n'
               "helper()\n", 'raises.py", line 8, in <module>', "RuntimeError: boom at import"),
    "syntax": ("import plait\n\ndef f(:\n    pass\n", 'syntax.py", line 3', "SyntaxError:"),
    "missing": ("import plait\nimport no_such_module_for_plait_tests\n",
                'missing.py", line 2, in <module>',
                "ModuleNotFoundError: No module named 'no_such_module_for_plait_tests'"),
}


def assert_user_traceback_only(stderr: str, spec: str, name: str) -> None:
    _, frame, error = BROKEN_MODULES[name]
    assert frame in stderr and error in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot import {spec}: {error.split(':')[0]}"), last
    # The user's frames only: none of plait's loader, importlib, typer or click.
    for internal in ("plait/", "importlib", "typer", "click"):
        assert internal not in stderr, stderr


def test_a_user_module_that_fails_to_import_shows_only_its_own_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, (source, _, _) in BROKEN_MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    # The real program once, as a user runs it ...
    proc = plait_cli("run", "raises.py:wf", cwd=tmp_path)
    assert proc.returncode == 2
    assert_user_traceback_only(proc.stderr, "raises.py", "raises")
    # ... and every case in-process (typer's CliRunner; the same loader, faster).
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = [(["run", f"{name}.py:wf"], f"{name}.py", name) for name in BROKEN_MODULES]
    cases += [(["run", f"{name}:wf"], name, name) for name in BROKEN_MODULES]  # by module name
    cases += [(["ask", "q", "--tools", f"{name}.py", "--model", "sim:x"], f"{name}.py", name)
              for name in BROKEN_MODULES]
    for args, spec, name in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert_user_traceback_only(result.stderr, spec, name)
    result = CliRunner().invoke(app, ["run", "no_such_module_at_all:wf"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: cannot import 'no_such_module_at_all': "
                                     "No module named 'no_such_module_at_all'")


def test_a_deeply_nested_argument_is_a_clear_error(tmp_path: Path) -> None:
    """In-process (typer's CliRunner): a RecursionError would surface as its exception."""
    flow = tmp_path / "deep_args_flow.py"
    flow.write_text(WORKFLOW + "\n@plait.workflow\nasync def echo(*xs):\n"
                    "    return await square(len(str(xs)))\n")
    runner = CliRunner()
    deep = ["[" * 100_000, "[" * 60_000 + "]" * 60_000, '{"a": ' * 5000 + "1" + "}" * 5000]
    for arg in deep:
        result = runner.invoke(app, ["run", f"{flow}:echo", "1", arg])
        assert result.exit_code == 2, result.exception  # an uncaught exception exits 1
        assert result.output.startswith("error: argument 2 (") and "at most 100" in result.output
    # 100 levels run; brackets inside a JSON string do not nest.
    result = runner.invoke(app, ["run", f"{flow}:echo", "[" * 100 + "]" * 100,
                                 '"' + "[" * 5000 + '"', "--json"])
    assert result.exit_code == 0, result.output
    nested: list = []
    for _ in range(99):
        nested = [nested]
    value = json.loads(result.stdout.splitlines()[-1])["value"]
    assert value == len(str((nested, "[" * 5000))) ** 2


TYPED = textwrap.dedent(
    """
    import plait

    @plait.workflow
    async def typed(n: int, s: str, xs: list[int] | None = None) -> str:
        return f"{n!r} {s!r} {xs!r}"

    @plait.workflow
    async def many(*ns: int) -> int:
        return sum(ns)
    """
)


def test_arguments_are_checked_against_the_type_hints(tmp_path: Path) -> None:
    """In-process: each argument converted to its parameter's hint; a mismatch, too
    many or too few is one error line naming the parameter, the type and the value."""
    flow = tmp_path / "typed_flow.py"
    flow.write_text(TYPED)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, ["run", "--no-journal", *args])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        return r.exit_code, r.stdout.splitlines()[0] if r.exit_code == 0 else r.stderr.strip()

    assert run(f"{flow}:typed", "3", "abc") == (0, "3 'abc' None")
    assert run(f"{flow}:typed", "3", "007") == (0, "3 '007' None")  # a str stays as typed
    assert run(f"{flow}:typed", "3", "[1]", "[1, 2]") == (0, "3 '[1]' [1, 2]")
    assert run(f"{flow}:many", "1", "2", "39") == (0, "42")
    usage = "typed(n: int, s: str, xs: list[int] | None)"
    for args, error in [
        (["x", "abc"], f"error: argument n of {usage} expects int, got 'x'"),
        (["3", "abc", '[1, "a"]'],
         f"""error: argument xs of {usage} expects list[int] | None, got '[1, "a"]'"""),
        (["3"], f"error: {usage} needs 2 argument(s), got 1: missing s"),
        ([], f"error: {usage} needs 2 argument(s), got 0: missing n, s"),
        (["1", "a", "[]", "4"], f"error: {usage} takes 3 argument(s), got 4: '4' too many"),
    ]:
        assert run(f"{flow}:typed", *args) == (2, error), args
    assert run(f"{flow}:many", "1", "two") == (
        2, "error: argument ns of many(*ns: int) expects int, got 'two'")
