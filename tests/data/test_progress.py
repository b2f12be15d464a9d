"""The live view of a dataset job, in its plain form (not a terminal)."""

from __future__ import annotations

import io
import time

from plait.data._progress import MapProgress
from plait.data._rows import Counts


def test_plain_lines_then_a_summary() -> None:
    counts = Counts()
    out = io.StringIO()
    with MapProgress(counts, total=10, file=out, live=False, every=0.05):
        counts.done, counts.failed, counts.in_flight, counts.tokens = 3, 1, 2, 400
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2
    assert lines[0].startswith("rows 4/10 · ") and "in flight 2" in lines[0]
    assert "failed 1" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("3 done, 0 dropped, 1 failed in ") and "400 tokens" in lines[-1]


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with MapProgress(Counts(), enabled=False, file=out, live=False, every=0.01):
        time.sleep(0.05)
    assert out.getvalue() == ""
