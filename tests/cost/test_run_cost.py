"""What a real journaled run cost, what its resume saved, and what cannot be priced.

Runs are real: workflows of `plait.generate` calls on the simulated model (in
process, or over HTTP as an `openai:` model), journaled in SQLite files; the CLI
reads them with a price file named by $PLAIT_PRICES.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import plait
from plait.cli import app
from plait.cost import Price, Prices, call_cost, run_cost
from plait.journal import Intent, Result, open_journal
from plait.llm import SimServer

pytestmark = pytest.mark.timeout(60)

SIM_PRICE = 'currency = "USD"\n[prices]\nsim = { input = 1000, output = 3000 }\n'
BROKEN: set[str] = set()


@plait.tool
def shout(text: str) -> str:
    """Upper-cases; fails while "shout" is broken."""
    if "shout" in BROKEN:
        raise RuntimeError("shout is broken")
    return text.upper()


@plait.workflow
async def brief(topic: str) -> str:
    facts = plait.generate(f"Three facts about {topic}.", model="sim")
    title = plait.generate(f"A title about {topic}.", model="sim")
    return await shout(f"{await title}: {await facts}")


@plait.workflow
async def remote(topic: str) -> str:
    return await plait.generate(f"One fact about {topic}.", model="openai:sim")


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def show(run_id: str, journal: str) -> dict[str, Any]:
    r = cli("show", run_id, "--journal", journal, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def priced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str = SIM_PRICE) -> Path:
    f = tmp_path / "prices.toml"
    f.write_text(text)
    monkeypatch.setenv("PLAIT_PRICES", str(f))
    return f


def expected(call: dict[str, Any], price: Price) -> float:
    """A call's cost from its own record: what the model reported it used."""
    record = call["record"]
    return price.of(record["prompt_tokens"], record["completion_tokens"])


def test_a_run_on_a_priced_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = str(tmp_path / "runs.db")
    priced(tmp_path, monkeypatch)
    plait.run(brief, "tides", journal=journal, run_id="b1")
    data = show("b1", journal)
    llm = [c for c in data["calls"] if c["tool"] == "generate"]
    tool = [c for c in data["calls"] if c["tool"] == "shout"]
    assert len(llm) == 2 and len(tool) == 1
    price = Price(1000, 3000)
    for call in llm:
        assert call["record"]["estimated"] is False  # the backend reported its usage
        assert call["cost"] == pytest.approx(expected(call, price)) and call["cost"] > 0
    assert tool[0]["cost"] == 0.0  # a tool call used no tokens
    run = data["run"]
    assert run["cost"] == pytest.approx(sum(expected(c, price) for c in llm))
    assert (run["currency"], run["cost_estimated"], run["cost_unpriced"]) == ("USD", False, [])
    assert (run["cost_saved"], run["replayed"]) == (0.0, 0)  # never resumed

    listed = json.loads(cli("runs", "--journal", journal, "--json").stdout)["runs"]
    assert listed[0]["cost"] == pytest.approx(run["cost"])
    text = cli("show", "b1", "--journal", journal).stdout
    cost_line = next(line for line in text.splitlines() if line.startswith("cost"))
    assert f"${run['cost']:.2f}" in cost_line or f"${run['cost']:.4f}" in cost_line
    assert "saved" not in cost_line
    # Without the price file the simulated model costs nothing.
    monkeypatch.delenv("PLAIT_PRICES")
    assert show("b1", journal)["run"]["cost"] == 0.0


def test_what_a_resume_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = str(tmp_path / "runs.db")
    priced(tmp_path, monkeypatch)
    BROKEN.add("shout")
    try:
        failed = plait.run(brief, "dunes", journal=journal, run_id="r1", raise_on_error=False)
    finally:
        BROKEN.clear()
    assert not failed.ok
    first = show("r1", journal)
    assert first["run"]["status"] == "failed" and first["run"]["replayed"] == 0
    paid = first["run"]["cost"]
    assert paid > 0

    again = plait.run(brief, "dunes", journal=journal, run_id="r1")  # resumes it
    assert again.ok
    data = show("r1", journal)
    run = data["run"]
    llm = [c for c in data["calls"] if c["tool"] == "generate"]
    # Both LLM calls came from the journal: not paid again, and that is the saving.
    assert all(c["replayed"] and c["session"] == 1 for c in llm)
    assert run["replayed"] == 2
    assert run["cost_saved"] == pytest.approx(sum(c["cost"] for c in llm)) == pytest.approx(paid)
    assert run["cost"] == pytest.approx(paid)  # paid once, in all
    text = cli("show", "r1", "--journal", journal).stdout
    assert "by replaying 2 calls" in text
    listed = json.loads(cli("runs", "--journal", journal, "--json").stdout)["runs"][0]
    assert listed["cost_saved"] == pytest.approx(paid) and listed["replayed"] == 2


def test_a_model_without_a_price_costs_unknown(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    journal = str(tmp_path / "runs.db")
    with SimServer(ttft=0.0, tps=2000.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
        plait.run(remote, "comets", journal=journal, run_id="u1")
    data = show("u1", journal)
    (call,) = data["calls"]
    assert call["tokens"] > 0 and call["cost"] is None
    run = data["run"]
    assert (run["cost"], run["cost_unpriced"]) == (None, ["openai:sim"])
    text = cli("show", "u1", "--journal", journal).stdout
    assert "cost      ? (no price for openai:sim)" in text
    row = next(line for line in cli("runs", "--journal", journal).stdout.splitlines()
               if line.startswith("u1 "))
    assert row.split()[7] == "?"  # the cost column: unknown, not 0
    # Priced in the file, it is known.
    priced(tmp_path, monkeypatch, '[prices]\n"openai:sim" = { input = 2, output = 8 }\n')
    data = show("u1", journal)
    assert data["run"]["cost"] == pytest.approx(expected(data["calls"][0], Price(2, 8)))


def test_a_bad_price_file_ends_the_command_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = str(tmp_path / "runs.db")
    plait.run(brief, "x", journal=journal, run_id="x1")
    f = priced(tmp_path, monkeypatch, '[prices]\nsim = { input = "free", output = 0 }\n')
    for args in (("runs",), ("show", "x1")):
        r = cli(*args, "--journal", journal)
        assert r.exit_code == 2
        assert r.stderr.strip() == (f'error: price file {f}: entry prices."sim": input must be '
                                    "a number >= 0 (per million tokens), got 'free'")


def _call(model: str | None, **result: Any) -> tuple[Intent, Result]:
    args = {"request": {"model": model, "messages": [["user", "hi"]]}} if model else {"x": 1}
    return Intent("r", "k", "generate" if model else "count", args), Result("r", "k", True,
                                                                            **result)


def test_calls_journaled_without_a_split_are_priced_only_where_it_cannot_matter() -> None:
    prices = Prices({"openai:flat": (2, 2), "openai:split": (1, 4)})
    # Before plait.generate, the split was in the value: {text, prompt_tokens, ...}.
    old = {"text": "hi", "prompt_tokens": 100, "completion_tokens": 50, "estimated": False}
    c = call_cost(*_call("openai:split", value=old, tokens=150), prices)
    assert c.cost == pytest.approx((100 * 1 + 50 * 4) / 1e6) and not c.estimated
    # A total only: known when input and output cost the same, else unknown.
    assert call_cost(*_call("openai:flat", tokens=1000), prices).cost == pytest.approx(0.002)
    unknown = call_cost(*_call("openai:split", tokens=1000), prices)
    assert unknown.cost is None and unknown.unpriced is None
    # Counts plait estimated itself (no usage from the server) are marked so.
    est = call_cost(*_call("openai:split", tokens=30, extra={
        "prompt_tokens": 20, "completion_tokens": 10, "estimated": True}), prices)
    assert est.cost == pytest.approx(60 / 1e6) and est.estimated
    # A tool that counted tokens (plait.add_tokens) has no model to price.
    tool = call_cost(*_call(None, tokens=10), prices)
    assert (tool.cost, tool.unpriced) == (None, "count")
    assert call_cost(*_call(None, tokens=0), prices).cost == 0.0


def test_run_cost_of_a_journal_from_python(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.db")
    plait.run(brief, "geysers", journal=journal, run_id="p1")
    j = open_journal(journal, read_only=True)
    try:
        state = j.load("p1")
    finally:
        j.close()
    cost = run_cost(state, Prices({"sim": (1000, 3000)}))
    tokens = sum(r.tokens for r in state.results.values())
    assert 0 < cost.total <= tokens * 3000 / 1e6 and cost.saved == 0.0
    assert run_cost(state, Prices()).total == 0.0
