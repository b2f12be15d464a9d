"""A run of LLM calls killed (SIGKILL) during its last call resumes paying only for
that call: the finished ones, a sample among them, are replayed from the journal.
The journal is a real SQLite file; the crash a real SIGKILL of a child process."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("crash_child.py")


def child(journal: str, counter: Path, die: bool) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(CHILD), "--journal", journal, "--run-id", "crash",
           "--counter", str(counter), *(["--die"] if die else [])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(120)
def test_a_killed_run_resumes_without_paying_twice(journal: str, tmp_path: Path) -> None:
    counter = tmp_path / "paid"
    killed = child(journal, counter, die=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    paid = collections.Counter(counter.read_text().split())
    assert paid == {"facts": 1, "title": 1, "draft": 1}

    resumed = child(journal, counter, die=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out = json.loads(resumed.stdout)
    assert out["value"] == "<draft reply>" and out["replayed"] == 2
    paid = collections.Counter(counter.read_text().split())
    assert paid == {"facts": 1, "title": 1, "draft": 2}  # only the cut-off call again
