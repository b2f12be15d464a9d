"""`plait ui` in a real headless browser: Debian's Chromium (/usr/bin/chromium)
driven by playwright (never a browser of its own). Checks the DOM the pages draw from the API, follows links,
filters a job's rows, watches a run go on, and keeps screenshots in
test-artifacts/ui/ (gitignored)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plait
from plait.cost import Prices
from plait.ui import UIServer
# The timeline tests' browser: Debian's chromium driven by playwright, one per module.
from tests.timeline.conftest import browser  # noqa: F401 - a fixture, used by name
from tests.ui._runs import GATES, stepwise

pytestmark = pytest.mark.timeout(90)


def wait_count(page: Any, selector: str, n: int, timeout: float = 15.0) -> None:
    """Wait until `selector` matches `n` elements. Polled from here: the pages'
    Content-Security-Policy forbids the eval that wait_for_function would use."""
    deadline = time.monotonic() + timeout
    while len(page.query_selector_all(selector)) != n:
        assert time.monotonic() < deadline, (selector, len(page.query_selector_all(selector)))
        page.wait_for_timeout(50)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    page.close()
    assert errors == []


def test_the_runs_list_and_a_failed_run(ui: UIServer, page: Any, artifacts: Path) -> None:
    page.goto(ui.url + "/")
    page.wait_for_selector("#runs tbody tr")
    rows = page.query_selector_all("#runs tbody tr")
    status = {r.get_attribute("data-run-id"): r.get_attribute("data-status") for r in rows}
    assert status == {"ok1": "done", "bad1": "failed", "res1": "done", "q1": "done",
                      "job1": "done"}
    assert page.inner_text("#runs tr[data-run-id=ok1] td.cost") == "$0.00"
    assert page.inner_text("#runs tr[data-run-id=job1] td.cost") == "?"
    assert int(page.inner_text("#runs tr[data-run-id=ok1] td.tokens")) > 0
    assert "bad word" in page.inner_text("#runs tr[data-run-id=bad1] td.what")
    assert page.is_hidden("#live")  # nothing runs
    page.screenshot(path=str(artifacts / "ui-runs.png"), full_page=True)

    page.click("#runs tr[data-run-id=bad1] a")
    page.wait_for_url("**/runs/bad1")
    page.wait_for_selector("#calls tbody tr")
    page.wait_for_selector("#plait-timeline[data-rendered-at]")
    # The timeline: one bar per call, the failed one visible, the critical path marked.
    bars = page.query_selector_all("#plait-timeline .pt-bar")
    assert sorted(b.get_attribute("data-n") for b in bars) == ["1", "2"]
    failed_bar = page.query_selector("#plait-timeline .pt-bar[data-state=failed]")
    assert failed_bar is not None and failed_bar.is_visible()
    assert page.query_selector_all("#plait-timeline .pt-bar.critical")
    assert page.inner_text("#title") == "run bad1"
    assert page.inner_text("#facts dd[data-fact=status]") == "failed"
    assert page.inner_text("#facts dd[data-fact=cost]") == "$0.00"
    failed = page.query_selector("#calls tr[data-state=failed]")
    assert failed is not None and failed.is_visible()
    assert failed.get_attribute("data-tool") == "shout"
    assert "error: ValueError: bad word" in failed.inner_text()
    assert page.query_selector("#calls tr[data-state=done][data-tool=generate]") is not None
    page.screenshot(path=str(artifacts / "ui-run-failed.png"), full_page=True)


def test_a_resumed_run_says_what_it_saved(journal: str, page: Any, artifacts: Path) -> None:
    with UIServer(journal, prices=Prices({"sim": (1000, 3000)})) as ui:
        page.goto(ui.url + "/runs/res1")
        page.wait_for_selector("#facts dd[data-fact=saved]")
        saved = page.inner_text("#facts dd[data-fact=saved]")
        assert saved.startswith("$0.") and saved.endswith("by replaying 1 call from the journal")
        assert page.inner_text("#calls tr[data-tool=generate] td.session") == "1 replayed"
        page.wait_for_selector("#plait-timeline[data-rendered-at]")
        assert len(page.query_selector_all("#plait-timeline .pt-bar")) == 2
        page.screenshot(path=str(artifacts / "ui-run-resumed.png"), full_page=True)


def test_a_question_shows_its_transcript(ui: UIServer, page: Any) -> None:
    page.goto(ui.url + "/runs/q1")
    page.wait_for_selector("#question:not([hidden]) .answer")
    assert 'shout("everest")' in page.inner_text("#steps pre.plan")
    assert page.inner_text("#steps .answer") == "answer: SHOUTED"


def test_a_jobs_failed_rows(ui: UIServer, page: Any, artifacts: Path) -> None:
    page.goto(ui.url + "/runs/job1")
    page.wait_for_selector("#rows tbody tr")
    assert len(page.query_selector_all("#rows tbody tr")) == 12
    counts = {b.get_attribute("data-status"): b.query_selector(".count").inner_text()
              for b in page.query_selector_all("#filters button")}
    assert counts == {"all": "12", "done": "6", "dropped": "3", "failed": "3"}
    page.click("#filters button[data-status=failed]")
    wait_count(page, "#rows tbody tr", 3)
    rows = page.query_selector_all("#rows tbody tr")
    assert [r.get_attribute("data-status") for r in rows] == ["failed"] * 3
    assert [r.get_attribute("data-ordinal") for r in rows] == ["2", "6", "10"]
    assert all("the reviewer choked" in r.inner_text() for r in rows)
    assert page.url.endswith("?status=failed")
    assert page.is_disabled("#next") and page.is_disabled("#prev")
    page.screenshot(path=str(artifacts / "ui-job-failed-rows.png"), full_page=True)
    page.reload()  # the filter is in the address: a reload keeps it
    wait_count(page, "#rows tbody tr", 3)
    # The job's timeline is drawn when asked for: one bar per call (6 done rows).
    assert page.query_selector("#plait-timeline[data-rendered-at]") is None
    page.click("#timeline-box summary")
    page.wait_for_selector("#plait-timeline[data-rendered-at]")
    assert len(page.query_selector_all("#plait-timeline .pt-bar")) == 6


def test_a_run_page_follows_the_run(tmp_path: Path, page: Any) -> None:
    journal = str(tmp_path / "live.db")
    GATES.clear()
    GATES.update({f"step{i}": threading.Event() for i in range(2)})
    # plait.run in threads: playwright's sync API keeps an event loop in this one.
    warmup = threading.Thread(target=plait.run, args=(stepwise, 0),
                              kwargs={"journal": journal, "run_id": "warmup"})
    warmup.start()
    warmup.join(30)
    with UIServer(journal) as ui:
        thread = threading.Thread(target=plait.run, args=(stepwise, 2),
                                  kwargs={"journal": journal, "run_id": "live"})
        thread.start()
        try:
            page.goto(ui.url + "/")
            page.wait_for_selector("#runs tr[data-run-id=live][data-status=running]")
            assert page.is_visible("#live")
            page.goto(ui.url + "/runs/live")
            page.wait_for_selector("#calls tr[data-state=running]")
            assert page.is_visible("#live")
            assert len(page.query_selector_all("#calls tbody tr")) == 1
            page.wait_for_selector("#plait-timeline .pt-bar[data-state=running]")
            GATES["step0"].set()  # the page is not reloaded: it polls
            wait_count(page, "#calls tbody tr", 2)
            wait_count(page, "#plait-timeline .pt-bar", 2)
            GATES["step1"].set()
            page.wait_for_selector("#facts dd[data-fact=status].done")
            assert page.is_hidden("#live")
            assert len(page.query_selector_all("#calls tr[data-state=done]")) == 2
            wait_count(page, "#plait-timeline .pt-bar[data-state=done]", 2)
        finally:
            for gate in GATES.values():
                gate.set()
            thread.join(30)
