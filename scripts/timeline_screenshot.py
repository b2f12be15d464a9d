"""Make docs/img/timeline.png, the README's picture of a run's timeline.

    python scripts/timeline_screenshot.py [--model local] [--out docs/img/timeline.png]

It asks the demo question as `make demo` does (`plait ask "Which is taller,
Mount Everest or K2?"`, the bundled model and tools, by default), writes the
run's page with `plait show RUN --html`, opens it in headless Chromium (Debian's
`chromium`, driven by playwright), selects the planner's call (its plan lines at
the moment each was parsed) and saves the picture: a real run, not a drawing.
Everything goes to a temporary journal; the bundled model takes a minute or so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Which is taller, Mount Everest or K2?"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no chromium: install the Debian package `chromium` (apt-get install chromium)")


def plait(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "plait", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"plait {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local", help="the model spec (default: local)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "timeline.png")
    parser.add_argument("--width", type=int, default=1100, help="the page's width in CSS px")
    options = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        journal, page_file = str(Path(tmp) / "runs.db"), Path(tmp) / "timeline.html"
        print(plait("ask", QUESTION, "--model", options.model, "--journal", journal,
                    "--run-id", "demo").strip())
        plait("show", "demo", "--journal", journal, "--html", str(page_file))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": options.width, "height": 900},
                                        device_scale_factor=2)
                page.goto(page_file.as_uri())
                page.wait_for_selector("#plait-timeline[data-rendered-at]")
                page.click(".pt-bar[data-tool=planner]")
                page.mouse.move(0, 0)
                # Down to the planner's plan lines: the header, the legend, the
                # chart and the start of the call's details.
                lines = page.locator(".pt-details pre").first.bounding_box()
                assert lines is not None
                options.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(options.out), clip={
                    "x": 0, "y": 0, "width": options.width,
                    "height": lines["y"] + lines["height"] + 8})
            finally:
                browser.close()
    print(options.out)


if __name__ == "__main__":
    main()
