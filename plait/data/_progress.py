"""The live view of a dataset job: rows done/total, rows/s, tokens/s, in flight,
errors and ETA. rich on a terminal; elsewhere (CI, a pipe) a plain line every few
seconds. Either way a summary line at the end.

It reads the job's counters from a thread of its own (rich's refresh thread, or
ours): plain integers written by the event loop, read without a lock, so a line
may mix counts a few microseconds apart, never a torn number.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from plait.data._rows import Counts

PLAIN_EVERY = 10.0  # seconds between plain lines


class MapProgress:
    def __init__(self, counts: Counts, *, total: int | None = None, enabled: bool = True,
                 file: TextIO | None = None, live: bool | None = None,
                 every: float = PLAIN_EVERY) -> None:
        self.counts = counts
        self.total = total
        self.enabled = enabled
        self.file = file or sys.stderr
        self.live = self.file.isatty() if live is None else live
        self.every = every
        self.t0 = time.perf_counter()
        self._live: Live | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self) -> str:
        c = self.counts
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        ran = c.done + c.dropped + c.failed  # rows ended in this process
        rate = ran / elapsed
        finished = c.finished
        of = f"/{self.total:,}" if self.total is not None else ""
        parts = [f"rows {finished:,}{of}", f"{_rate(rate)} rows/s",
                 f"{c.tokens / elapsed:,.0f} tok/s", f"in flight {c.in_flight}"]
        if c.dropped:
            parts.append(f"dropped {c.dropped:,}")
        if c.failed:
            parts.append(f"failed {c.failed:,}")
        if c.skipped:
            parts.append(f"skipped {c.skipped:,} (done before)")
        if self.total is not None and rate > 0 and finished < self.total:
            parts.append(f"ETA {_duration((self.total - finished) / rate)}")
        return " · ".join(parts)

    def summary(self) -> str:
        c = self.counts
        elapsed = time.perf_counter() - self.t0
        return (f"{c.done:,} done, {c.dropped:,} dropped, {c.failed:,} failed"
                + (f", {c.skipped:,} skipped (done before)" if c.skipped else "")
                + f" in {_duration(elapsed)}; {c.tokens:,} tokens")

    def __enter__(self) -> MapProgress:
        if not self.enabled:
            return self
        self.t0 = time.perf_counter()
        if self.live:
            console = Console(file=self.file, force_terminal=True)
            self._live = Live(_Renderable(self), console=console, refresh_per_second=4,
                              transient=True)
            self._live.__enter__()
        else:
            self._thread = threading.Thread(target=self._plain, name="plait-map-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def _plain(self) -> None:
        while not self._stop.wait(self.every):
            print(self.line(), file=self.file, flush=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)
            self._live = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        print(self.summary(), file=self.file, flush=True)


class _Renderable:
    """What rich's Live redraws: the current line."""

    def __init__(self, view: MapProgress) -> None:
        self.view = view

    def __rich__(self) -> Text:
        return Text(self.view.line())


def _rate(x: float) -> str:
    """Three significant digits, so a slow job shows 0.0312, not 0.0."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"
