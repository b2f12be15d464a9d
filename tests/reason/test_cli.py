"""`plait reason`: the joined text on stdout, the blocks on stderr, --json, replay."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from plait.cli import app

runner = CliRunner()
SCRIPT = str(Path(__file__).resolve().parents[2] / "examples" / "sim_reason.json")


def test_reason_prints_the_joined_text_and_replays_under_its_run_id(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    args = ["reason", "What is 12 x 13?", "--model", f"sim:ttft=0.01,script={SCRIPT}",
            "--journal", journal, "--run-id", "r1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("</Thread>\n</Parallel>\n120 + 36 = 156. Answer: 156\n")
    assert "<Thread>\n1: worked out.\n</Thread><Thread>\n2: worked out." in result.stdout
    assert "block 1 (depth 0): 1: " in result.stderr and "4 calls" in result.stderr

    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    record = json.loads(again.stdout)
    assert record["calls"] == 0 and record["replayed"] == 4
    assert [t["number"] for t in record["blocks"][0]["threads"]] == ["1", "2"]


def test_an_unknown_fork_is_refused() -> None:
    result = runner.invoke(app, ["reason", "q", "--model", "sim", "--fork", "nope",
                                 "--no-journal"])
    assert result.exit_code == 2 and "--fork" in result.output


def test_plait_resume_reasons_again_under_the_run_id(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    first = runner.invoke(app, ["reason", "What is 12 x 13?", "--model",
                                f"sim:ttft=0.01,script={SCRIPT}", "--journal", journal,
                                "--run-id", "r2", "--max-tokens", "300"])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, ["resume", "r2", "--journal", journal, "--json"])
    assert resumed.exit_code == 0, resumed.output
    record = json.loads(resumed.stdout)
    assert record["calls"] == 0 and record["replayed"] == 4
    assert record["text"] == first.stdout[:-1]  # printed with a newline after it
