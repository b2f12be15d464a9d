"""`plait map`, `plait show --rows`, `plait resume --retry-failed` in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

FLOW = textwrap.dedent(
    """
    import os
    import plait

    @plait.tool
    async def shout(text: str) -> str:
        \"\"\"The text in capitals; fails on "bad" unless $FIXED is set.\"\"\"
        if text == "bad" and not os.environ.get("FIXED"):
            raise ValueError("cannot shout bad")
        return text.upper()

    @plait.workflow
    async def loud(row: dict):
        if row["text"] == "skip":
            return plait.DROP
        return {"id": row["id"], "loud": await shout(row["text"])}
    """
)


def plait_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from plait.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env},
    )


def test_map_show_rows_and_retry_failed(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    rows = [{"id": 1, "text": "a"}, {"id": 2, "text": "bad"}, {"id": 3, "text": "skip"},
            {"id": 4, "text": "d"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    j = str(tmp_path / "runs.db")

    first = plait_cli("map", "flow.py:loud", "in.jsonl", "--out", "out.jsonl", "--key", "id",
                      "--journal", j, "--run-id", "job", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [{"id": 1, "loud": "A"}, {"id": 4, "loud": "D"}]
    assert "2 done, 1 dropped, 1 failed" in first.stderr
    assert "plait show job --rows failed" in first.stderr

    shown = plait_cli("show", "job", "--rows", "failed", "--journal", j, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "row 1  key 2  failed" in shown.stdout and "cannot shout bad" in shown.stdout
    assert "key 1 " not in shown.stdout  # only the failed rows

    as_json = json.loads(plait_cli("show", "job", "--rows", "all", "--json", "--journal", j,
                                   cwd=tmp_path).stdout)
    assert as_json["run"]["rows"] == {"done": 2, "dropped": 1, "failed": 1}
    assert [r["status"] for r in as_json["rows"]] == ["done", "failed", "dropped", "done"]

    again = plait_cli("resume", "job", "--retry-failed", "--journal", j, cwd=tmp_path,
                      FIXED="1")
    assert again.returncode == 0, again.stderr
    assert "3 skipped (done before)" in again.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [{"id": 1, "loud": "A"}, {"id": 2, "loud": "BAD"}, {"id": 4, "loud": "D"}]


def test_map_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    missing = plait_cli("map", "flow.py:loud", "nope.jsonl", "--no-journal", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "nope.jsonl" in missing.stderr
    (tmp_path / "in.txt").write_text("x")
    kind = plait_cli("map", "flow.py:loud", "in.txt", "--no-journal", cwd=tmp_path)
    assert kind.returncode == 2 and ".jsonl" in kind.stderr
    # A bad output is said before any row runs, journaled or not.
    (tmp_path / "in.jsonl").write_text('{"id": 1, "text": "a"}\n')
    out = plait_cli("map", "flow.py:loud", "in.jsonl", "--out", "out.txt", "--journal",
                    str(tmp_path / "runs.db"), cwd=tmp_path)
    assert out.returncode == 2 and "output format of out.txt" in out.stderr
    assert "done" not in out.stderr  # no job ran


def test_ask_every_question_of_a_file(tmp_path: Path) -> None:
    """`plait ask --questions FILE`: an evaluation sweep in one command, resumable."""
    (tmp_path / "script.json").write_text(json.dumps([
        {"role": "planner", "reply": '1. lookup("K2", "height")\n2. join()'},
        {"role": "joiner", "reply": '{"action": "finish", "answer": "8611 m"}'},
    ]))
    (tmp_path / "q.csv").write_text("id,question\na,How tall is K2?\nb,What is K2's height?\n")
    j = str(tmp_path / "runs.db")
    model = f"sim:ttft=0.01,tps=1000,script={tmp_path / 'script.json'}"
    done = plait_cli("ask", "--questions", "q.csv", "--out", "a.jsonl", "--key", "id",
                     "--model", model, "--journal", j, "--run-id", "sweep", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert rows == [{"id": "a", "question": "How tall is K2?", "answer": "8611 m"},
                    {"id": "b", "question": "What is K2's height?", "answer": "8611 m"}]
    again = plait_cli("resume", "sweep", "--journal", j, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 skipped (done before)" in again.stderr
    both = plait_cli("ask", "How tall is K2?", "--questions", "q.csv", cwd=tmp_path)
    assert both.returncode == 2 and "one of them" in both.stderr
