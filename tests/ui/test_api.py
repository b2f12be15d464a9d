"""`plait ui`'s JSON API and pages, on a real server (uvicorn on 127.0.0.1, a free
port) over a real SQLite journal, queried with httpx."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import plait
from plait.cli import app
from plait.cli._runview import clean
from plait.cost import Prices
from plait.ui import UIServer
from plait.ui._data import MAX_TEXT, cut_text
from tests.ui._runs import GATES, RUN_IDS, stepwise

pytestmark = pytest.mark.timeout(60)


def cli_json(*args: str) -> Any:
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def get(ui: UIServer, path: str, status: int = 200) -> Any:
    r = httpx.get(ui.url + path, timeout=10)
    assert r.status_code == status, (path, r.status_code, r.text)
    return r.json() if r.headers["content-type"].startswith("application/json") else r.text


def test_the_runs_list_is_plait_runs_json(ui: UIServer, journal: str) -> None:
    served = get(ui, "/api/runs")
    assert served == cli_json("runs", "--journal", journal)
    by_id = {r["run_id"]: r for r in served["runs"]}
    assert set(by_id) == RUN_IDS
    assert [by_id[k]["status"] for k in ("ok1", "bad1", "res1", "q1", "job1")] == [
        "done", "failed", "done", "done", "done"]
    assert by_id["ok1"]["tokens"] > 0 and by_id["ok1"]["cost"] == 0.0  # sim: free
    assert by_id["job1"]["calls"] is None and by_id["job1"]["cost"] is None
    assert get(ui, "/api/runs?limit=2")["runs"] == served["runs"][:2]


def test_a_run_is_plait_show_json(ui: UIServer, journal: str) -> None:
    for run_id in ("ok1", "bad1", "res1", "q1"):
        served = get(ui, f"/api/runs/{run_id}")
        shown = cli_json("show", run_id, "--journal", journal)
        # The same data, each string cut to MAX_TEXT characters (a page polls it).
        assert served == cut_text({**shown, "kind": "run", "calls_total": len(shown["calls"])})
    failed = get(ui, "/api/runs/bad1")
    states = {c["tool"]: c["state"] for c in failed["calls"]}
    assert states == {"shout": "failed", "generate": "done"}
    assert "ValueError: bad word" in failed["run"]["error"]
    planner = get(ui, "/api/runs/q1")["calls"][0]["arguments"]["request"]
    assert len(planner["grammar"]) < MAX_TEXT + 40  # the plan's grammar, cut
    assert planner["grammar"].endswith(" more characters)")
    question = get(ui, "/api/runs/q1")["question"]
    assert question["answer"] == "SHOUTED" and question["steps"][0]["kind"] == "plan"


def test_a_jobs_rows_by_status_a_page_at_a_time(ui: UIServer, journal: str) -> None:
    job = get(ui, "/api/runs/job1")
    assert job["kind"] == "job" and job["run"]["rows"] == {"done": 6, "dropped": 3, "failed": 3}
    assert job["run"] == cli_json("show", "job1", "--journal", journal)["run"]
    failed = get(ui, "/api/runs/job1/rows?status=failed")
    assert [r["ordinal"] for r in failed["rows"]] == [2, 6, 10] and failed["next"] is None
    assert all(r["status"] == "failed" and f"row {r['ordinal']}: the reviewer choked"
               in r["error"] for r in failed["rows"])
    done = get(ui, "/api/runs/job1/rows?status=done")["rows"]
    assert [r["value"]["text"] for r in done][:2] == ["REVIEW 0", "REVIEW 3"]
    # Paging: three at a time, in source order, each row once.
    seen, after = [], -1
    while after is not None:
        page = get(ui, f"/api/runs/job1/rows?limit=3&after={after}")
        assert len(page["rows"]) <= 3
        seen += [r["ordinal"] for r in page["rows"]]
        after = page["next"]
    assert seen == list(range(12))


def test_a_resume_and_what_it_saved(journal: str) -> None:
    """Priced (the simulated model at 1000/3000 per million tokens), the resumed
    run's LLM call, replayed from the journal, is what the resume saved."""
    with UIServer(journal, prices=Prices({"sim": (1000, 3000)})) as ui:
        data = get(ui, "/api/runs/res1")
        llm = [c for c in data["calls"] if c["tool"] == "generate"]
        assert len(llm) == 1 and llm[0]["replayed"] and llm[0]["cost"] > 0
        run = data["run"]
        assert run["replayed"] == 1 and run["cost_saved"] == pytest.approx(llm[0]["cost"])
        assert run["cost"] == pytest.approx(llm[0]["cost"])
        listed = {r["run_id"]: r for r in get(ui, "/api/runs")["runs"]}
        assert listed["res1"]["cost_saved"] == run["cost_saved"]
        assert listed["ok1"]["cost_saved"] == 0.0 and listed["ok1"]["cost"] > 0
        # The run's timeline is priced by the same table as its page.
        timeline = get(ui, "/api/runs/res1/timeline")
        assert timeline["run"]["cost"] == pytest.approx(run["cost"])
        assert timeline["run"]["cost_saved"] == pytest.approx(run["cost_saved"])


def test_a_runs_timeline_is_plait_timelines_data(ui: UIServer, journal: str) -> None:
    from plait.timeline import build, to_json

    for run_id in sorted(RUN_IDS):
        served = get(ui, f"/api/runs/{run_id}/timeline")
        assert served == json.loads(json.dumps(clean(to_json(build(journal, run_id)))))
    bad = get(ui, "/api/runs/bad1/timeline")
    assert {n["tool"]: n["state"] for n in bad["nodes"]} == {"shout": "failed",
                                                             "generate": "done"}
    assert get(ui, "/api/runs/nope/timeline", 404)["error"].startswith("no run 'nope'")


def test_bad_requests_say_what_is_wrong(ui: UIServer) -> None:
    assert get(ui, "/api/runs/nope", 404) == {"error": f"no run 'nope' in journal "
                                                       f"{get(ui, '/api/runs')['journal']}"}
    assert "status must be one of all, done, dropped, failed" in get(
        ui, "/api/runs/job1/rows?status=lost", 400)["error"]
    assert "limit must be within 1..500" in get(ui, "/api/runs/job1/rows?limit=0", 400)["error"]
    assert "after must be a whole number" in get(ui, "/api/runs/job1/rows?after=x", 400)["error"]
    assert get(ui, "/api/runs/nope/rows", 404)["error"].startswith("no run 'nope'")


def test_the_pages(ui: UIServer) -> None:
    assert 'data-page="index"' in get(ui, "/")
    assert 'data-page="run"' in get(ui, "/runs/ok1")
    assert 'data-page="job"' in get(ui, "/runs/job1")
    assert "plaitUI" in get(ui, "/static/ui.js")
    assert "plaitTimeline" in get(ui, "/static/timeline/timeline.js")
    assert httpx.get(ui.url + "/static/timeline/timeline.css").status_code == 200
    assert httpx.get(ui.url + "/static/nothing.js").status_code == 404


def test_only_requests_to_this_machine_are_answered(ui: UIServer) -> None:
    # A page elsewhere rebinding its name to 127.0.0.1 sends its own Host: refused.
    r = httpx.get(ui.url + "/api/runs", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 400 and "ok1" not in r.text
    r = httpx.get(f"http://localhost:{ui.port}/api/runs", timeout=10)
    assert r.status_code == 200
    page = httpx.get(ui.url + "/", timeout=10)
    assert "default-src 'none'" in page.headers["content-security-policy"]


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_it_never_writes_the_journal(journal: str) -> None:
    before = _digest(journal)
    with UIServer(journal) as ui:
        for path in ("/", "/api/runs", "/api/runs/ok1", "/api/runs/q1", "/api/runs/job1",
                     "/api/runs/job1/rows?status=failed", "/runs/job1"):
            httpx.get(ui.url + path, timeout=10).raise_for_status()
        assert ui._journal.read_only
    assert _digest(journal) == before


def test_a_run_going_on_shows_new_calls_on_the_next_poll(tmp_path: Path) -> None:
    journal = str(tmp_path / "live.db")
    GATES.clear()
    GATES.update({f"step{i}": threading.Event() for i in range(3)})
    plait.run(stepwise, 0, journal=journal, run_id="warmup")  # the journal exists
    with UIServer(journal) as ui:
        thread = threading.Thread(target=plait.run, args=(stepwise, 3),
                                  kwargs={"journal": journal, "run_id": "live"})
        thread.start()
        try:
            def until(check: Any) -> Any:
                deadline = time.monotonic() + 20
                while True:
                    r = httpx.get(ui.url + "/api/runs/live", timeout=10)
                    if r.status_code == 200 and check(data := r.json()):
                        return data
                    assert time.monotonic() < deadline, r.text
                    time.sleep(0.05)

            data = until(lambda d: len(d["calls"]) == 1)
            timeline = get(ui, "/api/runs/live/timeline")
            assert [n["state"] for n in timeline["nodes"]] == ["running"]
            assert data["run"]["status"] == "running"
            assert [c["state"] for c in data["calls"]] == ["running"]
            listed = {r["run_id"]: r for r in get(ui, "/api/runs")["runs"]}
            assert listed["live"]["status"] == "running"  # its owner is alive: not crashed
            for i in range(2):
                GATES[f"step{i}"].set()
                data = until(lambda d, n=i + 2: len(d["calls"]) == n)
                assert [c["state"] for c in data["calls"]] == ["done"] * (i + 1) + ["running"]
                assert data["calls"][i]["value"] == f"v{i}"
            GATES["step2"].set()
            data = until(lambda d: d["run"]["status"] == "done")
            timeline = get(ui, "/api/runs/live/timeline")
            assert [n["state"] for n in timeline["nodes"]] == ["done"] * 3
            assert [c["value"] for c in data["calls"]] == ["v0", "v1", "v2"]
        finally:
            for gate in GATES.values():
                gate.set()
            thread.join(30)


class _Counting:
    """A real journal that counts the runs loaded through it."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal
        self.loaded: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.journal, name)

    def load(self, run_id: str) -> Any:
        self.loaded.append(run_id)
        return self.journal.load(run_id)


def test_a_polled_list_loads_only_the_runs_still_running(journal: str, tmp_path: Path) -> None:
    from plait.cli._runview import list_runs
    from plait.cost import Prices
    from plait.journal import open_journal

    j = _Counting(open_journal(journal, read_only=True))
    try:
        cache: dict = {}
        first, _ = list_runs(j, 50, Prices(), cache)
        assert sorted(j.loaded) == ["bad1", "ok1", "q1", "res1"]  # not the job's calls
        j.loaded.clear()
        again, _ = list_runs(j, 50, Prices(), cache)
        assert again == first and j.loaded == []  # all ended: nothing loaded again
        assert list_runs(j, 1, Prices(), cache)[0] == first[:1] and len(cache) == 1
    finally:
        j.close()
