"""The timeline page in a real headless Chromium (see conftest.py): real runs
(runs.py) drawn as `plait show RUN --html` writes them, checked in the DOM, and
screenshotted into test-artifacts/timeline/."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from plait.timeline import build, render_html, to_json

from . import runs
from .conftest import screenshot

pytestmark = pytest.mark.timeout(180)

RENDER_BOUND_MS = 2000  # a 10,000-call job's page, from navigation to drawn


def write(tmp_path: Path, journal: str, run_id: str) -> tuple[Path, Any]:
    timeline = build(journal, run_id)
    path = tmp_path / f"{run_id}.html"
    path.write_text(render_html(timeline), encoding="utf-8")
    return path, timeline


def attrs(page: Any, selector: str, name: str) -> list[str]:
    return page.eval_on_selector_all(selector, f"els => els.map(e => e.getAttribute('{name}'))")


def test_a_crashed_and_resumed_workflow(journal: str, tmp_path: Path, open_page: Any) -> None:
    path, t = write(tmp_path, journal, "resumed")
    page = open_page(path)
    assert page.get_attribute("#plait-timeline", "data-view") == "calls"
    # One bar per call, keyed as in the journal.
    keys = attrs(page, ".pt-bar", "data-key")
    assert sorted(keys) == sorted(nd.key for nd in t.nodes)
    # The critical path is marked, and only it.
    critical = [int(n) for n in attrs(page, ".pt-bar.critical", "data-n")]
    assert sorted(critical) == sorted(t.critical.nodes) and len(critical) == 2
    assert page.locator(".pt-edge").count() == 1  # one link between its two calls
    assert "Critical path:" in page.inner_text(".pt-path")
    # The failed call is visible, red, and says why.
    failed = page.locator(".pt-bar.state-failed")
    assert failed.count() == 1 and failed.get_attribute("data-tool") == "flaky_index"
    box = failed.bounding_box()
    assert box is not None and box["width"] >= 3 and box["height"] >= 10
    fill = failed.locator("rect.pt-body").evaluate("r => getComputedStyle(r).fill")
    assert fill == "rgb(229, 72, 77)"
    # The calls done before the crash are replayed: drawn in session 1, hatched.
    replayed = page.locator(".pt-bar.replayed")
    assert sorted(attrs(page, ".pt-bar.replayed", "data-key")) == sorted(
        nd.key for nd in t.nodes if nd.replayed)
    assert replayed.count() == 2 and page.locator(".pt-bar.replayed rect.pt-hatch").count() == 2
    k2 = next(nd for nd in t.nodes if nd.tool == "fetch" and nd.replayed)
    replayed = page.locator(f'.pt-bar[data-key="{k2.key}"]')
    # A retried call says how many attempts it took.
    assert page.locator(".pt-bar[data-tool=shaky] text").text_content().startswith("↻3 ↺ shaky")
    # The crash and the resume: one gap between session 1 and session 2, after k2.
    gap = page.locator(".pt-gap")
    assert gap.count() == 1 and gap.get_attribute("data-before") == "2"
    k2_box = replayed.bounding_box()
    assert gap.bounding_box()["x"] >= k2_box["x"] + k2_box["width"] - 1
    # Calls that overlap in time sit in different lanes.
    fetches = [nd for nd in t.nodes if nd.tool == "fetch" and nd.session == 2]
    lanes = {page.get_attribute(f'.pt-bar[data-n="{nd.n}"]', "data-lane") for nd in fetches}
    assert len(fetches) == 2 and len(lanes) == 2
    # Hover: the call in a tooltip; click: everything about it, its error in full.
    failed.hover()
    tip = page.locator(".pt-tip")
    assert tip.is_visible() and "flaky_index" in tip.inner_text()
    failed.click()
    details = page.inner_text(".pt-details")
    assert 'source = "K2"' in details and "ConnectionError: the index at" in details
    assert runs.SECRET not in page.content() and "svc:***@" in details
    summarize = next(nd for nd in t.nodes if nd.tool == "summarize")
    page.click(f'.pt-bar[data-n="{summarize.n}"]')
    details = page.inner_text(".pt-details")
    assert "inputs" in details and "page about Lhotse" in details
    screenshot(page, "workflow-crash-resume.png")


def test_a_crashed_run_before_its_resume(journal: str, tmp_path: Path, open_page: Any) -> None:
    path, t = write(tmp_path, journal, "crashed")
    page = open_page(path)
    doubt = [nd.key for nd in t.nodes if nd.state == "in doubt"]
    assert doubt and sorted(attrs(page, ".pt-bar.state-in-doubt", "data-key")) == sorted(doubt)
    assert "crashed" in page.inner_text(".pt-status")


def test_a_question_with_its_plan_lines(journal: str, tmp_path: Path, open_page: Any) -> None:
    path, t = write(tmp_path, journal, "q-1")
    page = open_page(path)
    assert page.locator(".pt-bar").count() == len(t.nodes) == 5
    assert page.locator(".pt-bar.kind-llm").count() == 2
    assert page.locator(".pt-bar.kind-tool").count() == 3
    # A mark per plan line, on the planner's bar, at the moment the line was parsed.
    assert page.locator(".pt-mark").count() == 4 and page.locator(".pt-mark.task").count() == 3
    planner = page.locator(".pt-bar.kind-llm[data-tool=planner]").bounding_box()
    for box in (page.locator(".pt-mark line").nth(i).bounding_box() for i in range(4)):
        assert planner["x"] <= box["x"] <= planner["x"] + planner["width"]
    # A task starts at or after its line: its bar's left edge is right of its mark.
    first_task_mark = page.locator(".pt-mark.task line").first.bounding_box()["x"]
    fetch_everest = next(nd for nd in t.nodes if nd.arguments == 'source = "Mount Everest"')
    bar = page.locator(f'.pt-bar[data-n="{fetch_everest.n}"]').bounding_box()
    assert bar["x"] >= first_task_mark - 2
    assert sorted(int(n) for n in attrs(page, ".pt-bar.critical", "data-n")) == sorted(
        t.critical.nodes)
    page.locator(".pt-mark.task").first.hover()
    assert 'fetch("Mount Everest")' in page.inner_text(".pt-tip")
    page.click(".pt-bar[data-tool=planner]")
    assert "lines, at the moment each was parsed" in page.inner_text(".pt-details")
    assert "cost $0.00" in page.inner_text(".pt-sub")  # the sim model is free by default
    screenshot(page, "question.png")


def test_render_again_with_new_data_keeps_the_selection(
        journal: str, tmp_path: Path, open_page: Any) -> None:
    """What `plait ui` does on a live run's update: render(container, data) again."""
    path, t = write(tmp_path, journal, "q-1")
    page = open_page(path)
    page.click(".pt-bar[data-tool=planner]")
    data = to_json(t)
    data["nodes"] = data["nodes"][:3]  # fewer calls, as earlier in a live run
    data["critical"]["nodes"] = []
    page.evaluate("d => plaitTimeline.render(document.getElementById('plait-timeline'), d)",
                  data)
    assert page.locator(".pt-bar").count() == 3
    assert page.locator(".pt-bar.selected").get_attribute("data-tool") == "planner"
    page.evaluate("d => plaitTimeline.render(document.getElementById('plait-timeline'), d)",
                  json.loads(json.dumps(to_json(t))))
    assert page.locator(".pt-bar").count() == 5
    assert page.locator(".pt-bar.selected").get_attribute("data-tool") == "planner"
    assert "#1 planner" in page.inner_text(".pt-details")
    page.hover(".pt-bar[data-tool=joiner]")  # the tooltip of the latest render
    assert page.locator(".pt-tip").count() == 1 and "joiner" in page.inner_text(".pt-tip")


def test_a_10000_call_dataset_job_opens_in_under_two_seconds(
        tmp_path: Path, open_page: Any) -> None:
    journal = str(tmp_path / "job.db")
    # Off this thread: playwright's sync API runs an event loop on it.
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(runs.dataset_job, journal, "job-10k", 2500).result()
    assert result.rows_failed == 25
    path, t = write(tmp_path, journal, "job-10k")
    assert len(t.nodes) == 10_000
    page = open_page(path, height=900)
    # Measured in the page: performance.now() (from the navigation's start) once the
    # frame after drawing ran. The file's read, the JSON's parse, the drawing, a layout.
    rendered = float(page.get_attribute("#plait-timeline", "data-rendered-at"))
    drawing = float(page.get_attribute("#plait-timeline", "data-render-ms"))
    print(f"10,000 calls: drawn in {drawing:.0f} ms, on screen {rendered:.0f} ms after "
          f"navigation; file {path.stat().st_size / 1e6:.1f} MB")
    assert rendered < RENDER_BOUND_MS
    # By stage and by row, not a bar per call.
    assert page.get_attribute("#plait-timeline", "data-view") == "stages"
    assert page.locator(".pt-bar").count() == 0
    assert attrs(page, ".pt-stage", "data-tool") == ["tidy", "tag", "rate"]
    assert page.locator(".pt-row-table tr.pt-click").count() == 100
    # Drill-down: a failed row (listed first) opens as its two calls.
    first = page.locator(".pt-row-table tr.pt-click").first
    assert "failed" in first.inner_text()
    first.click()
    drill = page.locator(".pt-drill[data-drill=row] .pt-bar")
    assert drill.count() == 4 and page.locator(".pt-drill .pt-bar.state-failed").count() == 1
    # ... and a stage as its slowest and failed calls.
    page.click(".pt-stage-table tr[data-tool=rate]")
    bars = page.locator(".pt-drill[data-drill=stage] .pt-bar").count()
    assert 25 < bars <= 325 and page.locator(".pt-drill .pt-bar.state-failed").count() == 25
    page.click('.pt-filter button[data-filter="failed"]')
    assert page.locator(".pt-row-table tr.pt-click").count() == 25
    screenshot(page, "dataset-10k.png")
