"""A real headless browser for the timeline's pages: Debian's chromium, driven by
playwright (the PyPI package; its own browser downloads are never used).

One browser per test module (`browser`, module scope); each test opens pages in
it. Screenshots go to test-artifacts/timeline/ at the repository's root
(ignored by git), kept after the run for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "timeline"


@pytest.fixture(scope="session")
def journal(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One journal holding the runs of runs.py, each made once per test session:
    "crashed" (SIGKILLed, not resumed), "resumed" (the same, then resumed), "q-1"
    (a question)."""
    from . import runs

    path = str(tmp_path_factory.mktemp("timeline") / "runs.db")
    runs.crashed_run(path, "crashed", resume=False)
    runs.crashed_run(path, "resumed")
    runs.question(path, "q-1")
    return path


def chromium_path() -> str | None:
    """The chromium to drive: $PLAIT_TEST_CHROMIUM, else Debian's."""
    given = os.environ.get("PLAIT_TEST_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium to drive: install the Debian package `chromium` "
                    "(`apt-get install chromium`; `make test` does so where it can)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install 'plait[test]'")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """open_page(html_file) -> a page that has drawn it (errors in it fail the test)."""
    pages: list[Any] = []
    errors: list[str] = []

    def opener(path: Path, width: int = 1280, height: int = 760) -> Any:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: errors.append(f"request: {r.url}")
                if not r.url.startswith(("file:", "data:", "about:")) else None)
        page.set_default_timeout(10_000)
        pages.append(page)
        page.goto(path.as_uri())
        page.wait_for_selector("#plait-timeline[data-rendered-at]", timeout=15_000)
        return page

    yield opener
    for page in pages:
        page.close()
    assert not errors, errors


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.mouse.move(0, 0)  # no tooltip over the picture
    page.screenshot(path=str(path), full_page=True)
    return path
