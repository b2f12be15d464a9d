"""A timeline as JSON data, and as one self-contained HTML page.

The page holds its data in `<script type="application/json" id="plait-data">`
and draws it with `plaitTimeline.render(container, data)` (static/timeline.js),
its only script: no network, no framework, no build step. `plait ui` serves the
same script and calls the same function with data from its own endpoint.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from plait.timeline._model import Timeline, TimelineNode

FORMAT = 1  # the JSON's version: fields are only ever added


def to_json(timeline: Timeline) -> dict[str, Any]:
    """The timeline as JSON-able data: what `plaitTimeline.render` draws."""
    t = timeline
    return {
        "format": FORMAT,
        "run": {
            "run_id": t.run_id, "what": t.what, "entry": t.entry, "status": t.status,
            "origin": t.origin, "created_at": _r(t.created_at),
            "finished_at": None if t.finished_at is None else _r(t.finished_at),
            "tokens": t.tokens, "error": t.error, **t.cost,
        },
        "end": _r(t.end),
        "nodes": [_node(nd) for nd in t.nodes],
        "marks": [{"node": m.node, "t": _r(m.t), "text": m.text, "task": m.task}
                  for m in t.marks],
        "sessions": [{"session": s.session, "start": _r(s.start), "end": _r(s.end)}
                     for s in t.sessions],
        "gaps": [{"start": _r(g.start), "end": _r(g.end), "after": g.after, "before": g.before}
                 for g in t.gaps],
        "critical": {"nodes": list(t.critical.nodes), "length": _r(t.critical.length),
                     "inferred": t.critical.inferred, "known": t.critical.known},
        "rows": [{"key": r.key, "ordinal": r.ordinal, "status": r.status, "error": r.error,
                  "tokens": r.tokens, "nodes": list(r.nodes)} for r in t.rows],
    }


def _node(nd: TimelineNode) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": nd.n, "key": nd.key, "tool": nd.tool, "kind": nd.kind, "start": _r(nd.start),
        "end": None if nd.end is None else _r(nd.end), "until": _r(nd.until),
        "state": nd.state, "session": nd.session, "attempts": nd.attempts,
        "replayed": nd.replayed, "tokens": nd.tokens, "parents": list(nd.parents),
        "args": nd.arguments, "value": nd.value, "error": nd.error, "cost": nd.cost,
    }
    if nd.row:
        out["row"] = nd.row
    if nd.stats:
        out["stats"] = {k: v for k, v in nd.stats.items() if k != "lines"}
    return out


def _r(t: float) -> float:
    return round(t, 4)


def static_text(name: str) -> str:
    """A file of the page's assets (timeline.js, timeline.css)."""
    return resources.files("plait.timeline").joinpath("static", name).read_text("utf-8")


def script_json(data: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` in it at all, so no
    value can close the element or open a comment that would change how it ends."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render_html(timeline: Timeline) -> str:
    """One self-contained HTML page drawing `timeline`: its script, styles and
    data inline, nothing fetched."""
    title = f"plait · {timeline.run_id} · {timeline.what}"
    return _PAGE.format(
        title=html.escape(title[:200]), css=static_text("timeline.css"),
        data=script_json(to_json(timeline)), js=static_text("timeline.js"),
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<div id="plait-timeline" class="plait-timeline"></div>
<script type="application/json" id="plait-data">{data}</script>
<script>
{js}
</script>
<script>
plaitTimeline.render(document.getElementById("plait-timeline"),
                     JSON.parse(document.getElementById("plait-data").textContent));
</script>
</body>
</html>
"""
