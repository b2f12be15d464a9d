"""A live progress display of a run: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from plait.runtime import _events as ev

# Past this many nodes, plain output prints a summary a second instead of a line a node.
_PLAIN_NODE_LINES = 200


class Progress:
    """An event listener; use as a context manager around the run.

    On a terminal it shows counts of running, done and failed nodes and the calls in
    flight; elsewhere (CI, a pipe) it prints one line per node event.
    """

    def __init__(self, file: TextIO | None = None, live: bool | None = None) -> None:
        self.file = file or sys.stderr
        self.live = self.file.isatty() if live is None else live
        self.console = Console(file=self.file, force_terminal=self.live or None)
        self.counts: Counter[str] = Counter()
        self.running: dict[int, tuple[str, float]] = {}
        self.t0 = time.perf_counter()
        self._live: Live | None = None
        self._last_summary = 0.0
        self._nodes = 0

    def __enter__(self) -> Progress:
        if self.live:
            self._live = Live(self._render(), console=self.console, refresh_per_second=8,
                              transient=True, get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(typ, exc, tb)
            self._live = None
        self._line(self._summary())

    def __call__(self, event: ev.Event) -> None:
        now = event.t
        kind = type(event)
        if kind is ev.NodeAdded:
            self._nodes += 1
            self.counts["added"] += 1
            return
        if kind is ev.RunStarted:
            self.t0 = now
            return
        if not isinstance(event, ev.NodeEvent):
            return
        if kind is ev.NodeStarted:
            self.running[event.node] = (event.tool, now)
            self.counts["started"] += 1
            return
        if kind is ev.NodeReady:
            return
        self.running.pop(event.node, None)
        name = {
            ev.NodeFinished: "done",
            ev.NodeFailed: "failed",
            ev.NodeRetried: "retried",
            ev.NodeSkipped: "skipped",
            ev.NodeCancelled: "cancelled",
        }.get(kind)
        if name is None:
            return
        self.counts[name] += 1
        if self.live:
            return
        if self._nodes <= _PLAIN_NODE_LINES or name in ("failed", "retried"):
            self._line(self._node_line(event, name))
        elif now - self._last_summary >= 1.0:
            self._last_summary = now
            self._line(self._summary())

    def _node_line(self, event: ev.NodeEvent, name: str) -> str:
        t = event.t - self.t0
        extra = ""
        if isinstance(event, ev.NodeFinished):
            extra = f" in {event.duration:.3f}s"
        elif isinstance(event, (ev.NodeFailed, ev.NodeRetried)):
            extra = f": {event.error}"
        return f"[{t:8.3f}s] ${event.node} {event.tool} {name}{extra}"

    def _summary(self) -> str:
        c = self.counts
        t = time.perf_counter() - self.t0
        parts = [f"{c['done']}/{c['added']} done", f"{len(self.running)} running"]
        parts += [f"{c[k]} {k}" for k in ("failed", "retried", "skipped", "cancelled") if c[k]]
        return f"[{t:8.3f}s] " + ", ".join(parts)

    def _line(self, text: str) -> None:
        if self._live is not None:
            return
        print(text, file=self.file, flush=True)

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_row(self._summary())
        now = time.perf_counter()
        for node, (tool, t) in list(self.running.items())[:12]:
            table.add_row(f"  ${node} {tool} running {now - t:6.2f}s")
        if len(self.running) > 12:
            table.add_row(f"  ... and {len(self.running) - 12} more")
        return table
