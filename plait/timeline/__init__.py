"""See a run: its calls on a timeline, from the journal alone.

    from plait.timeline import build, render_html

    timeline = build("runs.db", "q1")          # frozen data: calls, plan lines,
    html = render_html(timeline)               # sessions, gaps, the critical path

`to_json(timeline)` is the data the page's script draws
(`plaitTimeline.render(container, data)`, static/timeline.js); `plait show RUN
--html FILE` writes the page. What each mark means: docs/timeline.md.
"""

from plait.timeline._build import build, from_state
from plait.timeline._model import (
    CriticalPath,
    Gap,
    PlanMark,
    RowSummary,
    Session,
    Timeline,
    TimelineNode,
)
from plait.timeline._render import render_html, static_text, to_json

__all__ = [
    "CriticalPath",
    "Gap",
    "PlanMark",
    "RowSummary",
    "Session",
    "Timeline",
    "TimelineNode",
    "build",
    "from_state",
    "render_html",
    "static_text",
    "to_json",
]
