"""`plait show` reads an LLM-call node as a call: its prompt's size and the text
it wrote on one line, and (with --json) the record the call kept: tokens split,
time to first token, elapsed. The CLI runs in-process (typer's CliRunner) on a
real SQLite journal."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import plait
from plait.cli import app
from tests.generate.conftest import Counted

MODEL = Counted(lambda m, r: "Tides follow the moon.", ttft=0.05, tps=1000)


@plait.workflow
async def tides() -> str:
    return await plait.generate("Why are there tides?", model=MODEL, system="Be brief.")


def test_show_reads_an_llm_call(journal: str) -> None:
    result = plait.run(tides, journal=journal, run_id="g1")
    runner = CliRunner()
    plain = runner.invoke(app, ["show", "g1", "--journal", journal], env={"COLUMNS": "250"})
    assert plain.exit_code == 0, plain.output
    assert 'generate(2 messages) -> "Tides follow the moon."' in plain.stdout

    shown = runner.invoke(app, ["show", "g1", "--journal", journal, "--json"])
    (call,) = json.loads(shown.stdout)["calls"]
    assert call["tool"] == "generate" and call["value"] == "Tides follow the moon."
    assert call["record"] == dict(result.nodes[0].extra)
    assert call["record"]["completion_tokens"] == 4 and call["record"]["ttft"] >= 0.05
