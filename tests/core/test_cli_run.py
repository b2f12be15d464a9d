"""`plait run module:workflow args` in a real subprocess (not a terminal: plain lines)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

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
    assert "4 calls in" in proc.stdout and "critical path" in proc.stdout
    # Not a terminal: one plain line per finished node, then a summary.
    done = [line for line in proc.stderr.splitlines() if " square done in " in line]
    assert len(done) == 4
    assert "4/4 done" in proc.stderr.splitlines()[-1]


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
    assert "ValueError: no 4" in proc.stdout
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
