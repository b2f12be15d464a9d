"""`plait.timeline.build` and the page it renders, from real runs in real SQLite files
(see runs.py): what each call is, its inputs, its session, the plan's line marks,
the critical path, the crash gap, and no secret in the page. The page in a real
browser: test_browser.py."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import plait
import plait.cost
import plait.timeline
from plait.cli import app
from plait.journal import open_journal
from plait.timeline import build, render_html, to_json
from plait.timeline._render import script_json

from . import runs

pytestmark = pytest.mark.timeout(120)


def by_tool(timeline, tool: str):
    return [nd for nd in timeline.nodes if nd.tool == tool]


def test_a_crashed_run_shows_its_cut_calls_in_doubt(journal: str) -> None:
    t = build(journal, "crashed")
    assert t.status == "crashed"
    (checkpoint,) = by_tool(t, "checkpoint")
    assert checkpoint.state == "in doubt" and checkpoint.end is None
    # Drawn up to the end of the session that made it: the process died then.
    assert checkpoint.until == pytest.approx(t.sessions[-1].end)
    (failed,) = by_tool(t, "flaky_index")
    assert failed.state == "failed" and failed.session == 1
    assert not t.gaps and [s.session for s in t.sessions] == [1]


def test_a_resumed_run_replays_session_one_after_a_gap(journal: str) -> None:
    t = build(journal, "resumed")
    assert t.status == "failed" and [s.session for s in t.sessions] == [1, 2]
    (gap,) = t.gaps
    assert (gap.after, gap.before) == (1, 2)
    assert t.sessions[0].end == gap.start < gap.end == t.sessions[1].start
    fetches = {nd.arguments: nd for nd in by_tool(t, "fetch")}
    k2 = fetches['source = "K2"']
    # Done before the crash, replayed by the resume: drawn in session 1, paid once.
    assert (k2.session, k2.replayed, k2.state) == (1, True, "done") and k2.end <= gap.start
    # Cut by the crash, made again in session 2.
    everest = fetches['source = "Mount Everest"']
    assert (everest.session, everest.replayed) == (2, False) and everest.start >= gap.end
    (shaky,) = by_tool(t, "shaky")
    assert (shaky.attempts, shaky.state, shaky.session, shaky.replayed) == (3, "done", 1, True)
    (failed,) = by_tool(t, "flaky_index")
    assert failed.state == "failed" and failed.session == 2
    assert failed.error.startswith("ConnectionError: the index at postgresql://svc:***@")
    # Inputs come from the journal's intents ({"$ref": key}), by number.
    (checkpoint,) = by_tool(t, "checkpoint")
    (summarize,) = by_tool(t, "summarize")
    assert checkpoint.parents == (k2.n,)
    assert set(summarize.parents) == {checkpoint.n, everest.n,
                                      fetches['source = "Lhotse"'].n}
    assert summarize.arguments.splitlines()[0] == f"a = ${checkpoint.n}"
    # The longest wait chain: the slowest input (Mount Everest, session 2), then the
    # summary; the first calls of a resumed session waited for the resume, not for
    # the calls before the crash.
    assert t.critical.known and t.critical.nodes == (everest.n, summarize.n)
    assert t.critical.inferred == 0
    assert t.critical.length == pytest.approx(summarize.end - everest.start)


def test_a_question_marks_its_plan_lines_and_its_path(journal: str) -> None:
    t = build(journal, "q-1")
    assert t.what == "Which is taller, Mount Everest or K2?" and t.status == "done"
    planner, joiner = by_tool(t, "planner"), by_tool(t, "joiner")
    assert len(planner) == 1 and len(joiner) == 1
    planner, joiner = planner[0], joiner[0]
    assert planner.kind == joiner.kind == "llm"
    assert {nd.kind for nd in by_tool(t, "fetch") + by_tool(t, "compare")} == {"tool"}
    assert planner.arguments.startswith("model: sim") and "[user] Question:" in planner.arguments
    assert planner.tokens > 0 and planner.stats["ttft"] == pytest.approx(0.05, abs=0.03)
    # Every line of the plan is marked when it was parsed, in order, inside the call;
    # each task starts no sooner than its line.
    texts = [m.text for m in t.marks]
    assert texts == ["Thought: look both up, then compare", '1. fetch("Mount Everest")',
                     '2. fetch("K2")', "3. compare($1, $2)"]
    assert [m.task for m in t.marks] == [False, True, True, True]
    times = [m.t for m in t.marks]
    assert times == sorted(times) and planner.start < times[0] and times[-1] <= planner.end
    fetches = by_tool(t, "fetch")
    for mark, fetch in zip(t.marks[1:3], sorted(fetches, key=lambda nd: nd.start), strict=True):
        assert fetch.start >= mark.t - 0.0002, (mark, fetch)  # 0.1 ms: line times are rounded
        assert fetch.start < planner.end  # dispatched while the plan was still streaming
    # The path: the plan, the slower fetch (dispatched by its line), compare, the joiner.
    (compare,) = by_tool(t, "compare")
    slower = max(fetches, key=lambda nd: nd.end)
    assert t.critical.nodes == (planner.n, slower.n, compare.n, joiner.n)
    assert t.critical.inferred == 2  # fetch waited for its plan line; the joiner for compare


def test_the_page_holds_its_data_and_assets_and_nothing_from_the_network(
        journal: str) -> None:
    page = render_html(build(journal, "resumed"))
    assert page.count("<script") == 3  # data, the script, the call to render
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in page  # the page may fetch nothing, even if it tried
    data = json.loads(re.search(r'<script type="application/json" id="plait-data">(.*?)'
                                r"</script>", page, re.S).group(1))
    assert data == json.loads(json.dumps(to_json(build(journal, "resumed"))))
    assert runs.SECRET not in page and "svc:***@" in page


def test_script_json_cannot_end_its_element() -> None:
    nasty = {"v": "</script><!--<script>alert(1)</script>&amp;\u2028"}
    text = script_json(nasty)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == nasty


def test_a_dataset_job_has_rows_with_their_calls(tmp_path: Path) -> None:
    journal = str(tmp_path / "job.db")
    result = runs.dataset_job(journal, "job-small", rows=120)
    assert (result.rows_done, result.rows_failed) == (118, 2)  # rows 13 and 113
    t = build(journal, "job-small")
    assert len(t.nodes) == 480 and len(t.rows) == 120
    rows = {r.key: r for r in t.rows}
    failed = rows["113"]
    assert failed.status == "failed" and "unlucky row" in failed.error
    calls = {t.nodes[n - 1].tool: t.nodes[n - 1] for n in failed.nodes}
    assert sorted(calls) == ["rate", "tag", "tidy"] and len(failed.nodes) == 4
    tidy, rate = calls["tidy"], calls["rate"]
    assert rate.parents == (tidy.n,) and rate.state == "failed"
    assert {t.nodes[n - 1].row for n in failed.nodes} == {"113"}
    assert [r.ordinal for r in t.rows] == list(range(120))


def test_plait_show_html_writes_the_page(journal: str, tmp_path: Path) -> None:
    out = tmp_path / "t.html"
    r = CliRunner().invoke(app, ["show", "resumed", "--journal", journal, "--html", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out)
    assert 'id="plait-data"' in out.read_text() and runs.SECRET not in out.read_text()
    r = CliRunner().invoke(app, ["show", "nope", "--journal", journal, "--html", str(out)])
    assert r.exit_code == 2 and "no run 'nope'" in r.output


def test_build_takes_an_open_journal_or_a_spec(journal: str) -> None:
    j = open_journal(journal)
    try:
        assert to_json(build(j, "q-1")) == to_json(build(journal, "q-1"))
    finally:
        j.close()
    with pytest.raises(plait.PlaitError, match="no run 'nope'"):
        build(journal, "nope")


def test_a_live_run_shows_its_running_call(tmp_path: Path) -> None:
    """What `plait ui` draws while a run goes on: a call without a result, running."""
    journal = str(tmp_path / "live.db")
    started, release = threading.Event(), threading.Event()

    @plait.tool
    def slow(x: int) -> int:
        """Waits for the test."""
        started.set()
        assert release.wait(30)
        return x

    @plait.workflow
    async def live(x: int) -> int:
        return await slow(x)

    thread = threading.Thread(target=plait.run, args=(live, 1),
                              kwargs={"journal": journal, "run_id": "live-1"})
    thread.start()
    try:
        assert started.wait(30)
        now = time.time()
        t = build(journal, "live-1", now=now + 5)
        assert t.status == "running"
        (call,) = t.nodes
        assert (call.state, call.end) == ("running", None)
        assert call.until == pytest.approx(t.end) and t.end == pytest.approx(now + 5 - t.origin)
    finally:
        release.set()
        thread.join(30)
    assert build(journal, "live-1").nodes[0].state == "done"


def test_a_postgresql_journal(pg_journal: str) -> None:
    runs.question(pg_journal, "q-pg")
    t = build(pg_journal, "q-pg")
    assert [nd.tool for nd in t.nodes].count("fetch") == 2 and len(t.marks) == 4
    assert t.critical.known and len(t.critical.nodes) == 4


def test_a_run_without_calls(tmp_path: Path) -> None:
    journal = str(tmp_path / "empty.db")

    @plait.workflow
    async def nothing() -> int:
        return 1

    plait.run(nothing, journal=journal, run_id="empty")
    t = build(journal, "empty")
    assert t.nodes == () and t.sessions == () and t.gaps == ()
    assert t.critical == plait.timeline.CriticalPath((), 0.0, 0, False)
    assert 'id="plait-data"' in render_html(t)


def test_calls_and_the_run_are_priced(journal: str) -> None:
    # The question's LLM calls ran on `sim:...`: priced by the table given, per call
    # by its own token split; tool calls cost nothing; no table: sim costs 0.
    prices = plait.cost.Prices({"sim": (2.0, 8.0)})
    t = build(journal, "q-1", prices=prices)
    llm = [nd for nd in t.nodes if nd.kind == "llm"]
    assert llm and all(nd.cost is not None and nd.cost > 0 for nd in llm)
    for nd in llm:
        assert nd.cost == pytest.approx((nd.stats["prompt_tokens"] * 2.0
                                         + nd.stats["completion_tokens"] * 8.0) / 1e6)
    assert all(nd.cost == 0 for nd in t.nodes if nd.kind == "tool")
    assert t.cost["cost"] == pytest.approx(sum(nd.cost for nd in llm))
    data = to_json(t)
    assert data["run"]["cost"] == t.cost["cost"] and data["run"]["currency"] == "USD"
    assert [n["cost"] for n in data["nodes"]] == [nd.cost for nd in t.nodes]
    assert build(journal, "q-1").cost["cost"] == 0.0  # the default table: sim is free
    unpriced = build(journal, "q-1", prices=plait.cost.Prices({}, defaults=False))
    assert unpriced.cost["cost"] is None and all(nd.cost is None for nd in unpriced.nodes
                                                  if nd.kind == "llm")


def test_a_call_with_a_prefill_shows_the_prefix_it_continues() -> None:
    from plait.generate._node import llm_request
    from plait.timeline._text import arguments_text

    request = llm_request("sim", [["user", "2+3?"]], prefill="<Parallel>\n<Thread>\n1:")
    text = arguments_text({"request": request}, {}, 2000)
    assert text.endswith("[user] 2+3?\n[assistant, continued] <Parallel>\n<Thread>\n1:")
    assert "prefill" not in arguments_text({"request": llm_request("sim", [["user", "q"]])},
                                           {}, 2000)
