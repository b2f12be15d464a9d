"""A run's timeline from its journal: calls, plan lines, sessions, gaps, the critical path.

Everything comes from the journal alone, so any run can be drawn: a call's
inputs are in its intent (an argument that is another call's value is written
`{"$ref": <that call's key>}`), its session in its result's extra data (the
lease epoch that wrote it), a plan's line times in its LLM call's record.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from plait.cost import Prices, call_cost, load_prices, run_cost
from plait.journal import Intent, Journal, JournalState, Result, RowRecord, open_journal
from plait.timeline._model import (
    CriticalPath,
    Gap,
    PlanMark,
    RowSummary,
    Session,
    Timeline,
    TimelineNode,
)
from plait.timeline._text import arguments_text, clean, value_text

# The compiler's LLM calls, by their tools' names (journals from before LLM calls
# were plait.generate's nodes have no request to recognise them by).
_LLM_ROLES = frozenset({"planner", "joiner", "react"})
_TASK_LINE = re.compile(r"\s*\d+\s*\.\s*\w")
# Past this many calls a page shows calls by stage and by row (see timeline.js),
# and each call's text is cut shorter: the file stays small enough to open fast.
MANY = 1500
TEXT_LIMIT = 2000
TEXT_LIMIT_MANY = 240
_EPS = 0.002  # seconds: "ended before it started", allowing for clock rounding


def build(journal: Journal | str, run_id: str, *, now: float | None = None,
          prices: Prices | None = None) -> Timeline:
    """The timeline of run `run_id` in `journal` (a `Journal`, or a spec to open
    and close). `now` (wall clock; default: now) is where the calls still running
    in a live run are drawn to. `prices` price the calls (default: the user's price
    table, `plait.cost.load_prices()`)."""
    if prices is None:
        prices = load_prices()
    own = isinstance(journal, str)
    j = open_journal(journal) if own else journal
    try:
        state = j.load(run_id)
        rows = list(_all_rows(j, run_id)) if state.run.entry.startswith("map:") else []
        live = False
        if state.run.status == "running":
            lease = j.get_lease(run_id)
            live = lease is not None and lease.alive()
    finally:
        if own:
            j.close()
    return from_state(state, rows, live=live, now=time.time() if now is None else now,
                      prices=prices)


def _all_rows(j: Journal, run_id: str) -> Iterator[RowRecord]:
    after = -1
    while True:
        page = j.iter_rows(run_id, after=after, limit=1000)
        yield from page
        if len(page) < 1000:
            return
        after = page[-1].ordinal


def from_state(state: JournalState, rows: list[RowRecord] | None = None, *,
               live: bool = False, now: float | None = None,
               prices: Prices | None = None) -> Timeline:
    """The timeline of a loaded run (`Journal.load`) and its row records, its calls
    priced by `prices` (default: local and simulated models only, at 0)."""
    prices = Prices() if prices is None else prices
    run = state.run
    intents = sorted(state.intents.values(), key=lambda i: (i.started_at, i.key))
    number = {intent.key: n for n, intent in enumerate(intents, 1)}
    results = state.results
    starts = [_start(i, results.get(i.key)) for i in intents]
    origin = min(starts, default=run.created_at)
    sessions_of = [_session(results.get(i.key)) for i in intents]
    last_session = max((s for s in sessions_of if s is not None), default=None)
    limit = TEXT_LIMIT_MANY if len(intents) > MANY else TEXT_LIMIT
    rows_later = _rows_run_again(intents, sessions_of, last_session)

    raw: list[dict[str, Any]] = []
    marks: list[PlanMark] = []
    for n, (intent, start, session) in enumerate(zip(intents, starts, sessions_of, strict=True),
                                                 1):
        result = results.get(intent.key)
        replayed = (session is not None and last_session is not None and session < last_session
                    and (not intent.row_key or intent.row_key in rows_later))
        raw.append(dict(
            n=n, key=intent.key, tool=intent.tool, kind=_kind(intent),
            start=start - origin,
            end=None if result is None else result.finished_at - origin,
            state=("running" if live else "in doubt") if result is None
            else "done" if result.ok else "failed",
            session=session, attempts=intent.attempt, replayed=replayed,
            tokens=result.tokens if result is not None else 0,
            parents=tuple(sorted({number[k] for k in _refs(intent.arguments) if k in number})),
            row=clean(intent.row_key),
            arguments=arguments_text(intent.arguments, number, limit),
            value=value_text(result.value, limit) if result is not None and result.ok else None,
            error=clean(result.error) if result is not None else None,
            stats=_stats(result),
            cost=0.0 if result is None else call_cost(intent, result, prices).cost,
        ))
        if result is not None and result.ok and raw[-1]["kind"] == "llm":
            marks.extend(_marks(raw[-1], result))

    sessions = _sessions(raw)
    wall_end = (run.finished_at if run.finished_at is not None else
                now if now is not None and live else run.updated_at)
    end = max([wall_end - origin] + [r["end"] for r in raw if r["end"] is not None]
              + [r["start"] for r in raw])
    for r in raw:
        r["until"] = r["end"] if r["end"] is not None else _until(r, sessions, end, live)
    nodes = tuple(TimelineNode(**r) for r in raw)
    gaps = tuple(Gap(a.end, b.start, a.session, b.session)
                 for a, b in zip(sessions, sessions[1:]) if b.start > a.end)
    return Timeline(
        run_id=run.run_id, what=clean(_what(run.entry, run.arguments)), entry=clean(run.entry),
        status=("crashed" if run.status == "running" and not live else run.status),
        origin=origin, created_at=run.created_at - origin,
        finished_at=None if run.finished_at is None else run.finished_at - origin,
        tokens=run.tokens, error=clean(run.error), nodes=nodes, marks=tuple(marks),
        sessions=tuple(sessions), gaps=gaps, critical=critical_path(nodes, marks, gaps),
        rows=tuple(_rows(rows or [], nodes)), end=end,
        cost=run_cost(state, prices).fields(),
    )


def _start(intent: Intent, result: Result | None) -> float:
    # The result's start is the last attempt's; the intent's is when it was written.
    return result.started_at if result is not None else intent.started_at


def _session(result: Result | None) -> int | None:
    if result is None or not isinstance(result.extra, Mapping):
        return None
    session = result.extra.get("session")
    return session if type(session) is int else None


def _stats(result: Result | None) -> dict[str, Any]:
    if result is None or not isinstance(result.extra, Mapping):
        return {}
    return {k: clean(v) for k, v in result.extra.items() if k != "session"}


def _rows_run_again(intents: list[Intent], sessions: list[int | None],
                    last: int | None) -> set[str]:
    """Rows with a call made by the last session: their calls from earlier sessions
    were replayed. (A row finished before is skipped whole on resume: not replayed.)"""
    if last is None:
        return set()
    return {i.row_key for i, s in zip(intents, sessions, strict=True) if i.row_key and s == last}


def _kind(intent: Intent) -> str:
    if intent.tool in _LLM_ROLES:
        return "llm"
    args = intent.arguments
    if isinstance(args, dict) and len(args) == 1:
        request = args.get("request")
        if isinstance(request, dict) and "model" in request and "messages" in request:
            return "llm"
    return "tool"


def _refs(value: Any) -> Iterator[str]:
    """The keys of the calls whose values `value` (canonical arguments) takes."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$ref"), str):
            yield value["$ref"]
            return
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _what(entry: str, arguments: Any) -> str:
    if entry.startswith("ask:") and isinstance(arguments, dict):
        return str(arguments.get("question", entry))
    return entry.rpartition(":")[2] or entry


def _sessions(raw: list[dict[str, Any]]) -> list[Session]:
    """Each session's span, from the calls it journaled. A call without a result
    (cut by a crash) was started by the session running then: it stretches that
    session's span to its start."""
    spans: dict[int, list[float]] = {}
    for r in raw:
        s = r["session"]
        if s is None:
            continue
        span = spans.setdefault(s, [r["start"], r["end"]])
        span[0] = min(span[0], r["start"])
        span[1] = max(span[1], r["end"])
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    for r in raw:
        if r["session"] is not None or not ordered:
            continue
        before = [span for _, span in ordered if span[0] <= r["start"]]
        span = before[-1] if before else ordered[0][1]
        span[0] = min(span[0], r["start"])
        span[1] = max(span[1], r["start"])
    return [Session(s, span[0], span[1]) for s, span in ordered]


def _until(r: dict[str, Any], sessions: list[Session], end: float, live: bool) -> float:
    """Where a call with no result is drawn to: now for a live run, else the end
    of the session it started in (the process that made it stopped then)."""
    if live or not sessions:
        return end
    inside = [s for s in sessions if s.start <= r["start"]]
    return max(r["start"], inside[-1].end if inside else sessions[0].end)


def _marks(node: dict[str, Any], result: Result) -> Iterator[PlanMark]:
    """Each line of a streamed reply whose call recorded its line times (the
    compiler's plans: `lines`, seconds from the call's start to the moment the
    line was complete and handed to the plan parser)."""
    lines = node["stats"].get("lines")
    value = result.value
    text = value if isinstance(value, str) else value.get("text") if isinstance(
        value, dict) else None  # journals before plait.generate: {"text": ...}
    if not isinstance(lines, list) or not isinstance(text, str):
        return
    texts = text.split("\n")
    for k, at in enumerate(lines):  # seconds since the call started
        if isinstance(at, (int, float)) and k < len(texts):
            line = clean(texts[k].strip())
            yield PlanMark(node["n"], node["start"] + at, line, bool(_TASK_LINE.match(line)))


def critical_path(nodes: tuple[TimelineNode, ...], marks: list[PlanMark] | tuple[PlanMark, ...],
                  gaps: tuple[Gap, ...]) -> CriticalPath:
    """See `CriticalPath`."""
    ended = [nd for nd in nodes if nd.end is not None]
    if not ended:
        return CriticalPath((), 0.0, 0, False)
    by_n = {nd.n: nd for nd in nodes}
    writers = {m.node for m in marks}  # LLM calls whose lines dispatched calls
    # Per row: calls by end time, to find "the call that ended last before t".
    rows: dict[str, list[TimelineNode]] = {}
    for nd in sorted(ended, key=lambda nd: (nd.end, nd.n)):
        rows.setdefault(nd.row, []).append(nd)
    row_ends = {row: [nd.end for nd in group] for row, group in rows.items()}
    planners: dict[str, list[TimelineNode]] = {}
    for w in writers:
        nd = by_n[w]
        planners.setdefault(nd.row, []).append(nd)

    def predecessor(nd: TimelineNode) -> tuple[TimelineNode | None, bool]:
        inputs = [by_n[p] for p in nd.parents if by_n[p].end is not None]
        if inputs:
            return max(inputs, key=lambda p: (p.end, p.n)), False
        # A wait is only ever on a call of the same session: the first calls of a
        # resumed session waited for the resume, not for the calls before the crash.
        for w in planners.get(nd.row, ()):
            if w.n != nd.n and w.session == nd.session and w.start <= nd.start <= w.until + _EPS:
                return w, True
        group, ends = rows.get(nd.row, []), row_ends.get(nd.row, [])
        k = bisect.bisect_right(ends, nd.start + _EPS)
        while k > 0:
            k -= 1
            cand = group[k]
            if cand.session != nd.session:
                break  # sessions do not overlap: every earlier end is earlier still
            if cand.n != nd.n and (cand.start, cand.n) < (nd.start, nd.n):
                return cand, True
        return None, False

    last = max(ended, key=lambda nd: (nd.end, nd.n))
    path = [last]
    seen = {last.n}
    inferred = 0
    while True:
        pred, guessed = predecessor(path[-1])
        if pred is None or pred.n in seen:
            break
        seen.add(pred.n)
        inferred += guessed
        path.append(pred)
    path.reverse()
    first, end = path[0].start, last.end
    assert end is not None
    gap_time = sum(max(0.0, min(g.end, end) - max(g.start, first)) for g in gaps)
    return CriticalPath(tuple(nd.n for nd in path), max(0.0, end - first - gap_time),
                        inferred, True)


def _rows(records: list[RowRecord], nodes: tuple[TimelineNode, ...]) -> Iterator[RowSummary]:
    calls: dict[str, list[int]] = {}
    for nd in nodes:
        if nd.row:
            calls.setdefault(nd.row, []).append(nd.n)
    for rec in records:
        yield RowSummary(clean(rec.row_key), rec.ordinal, rec.status, clean(rec.error),
                         rec.tokens, tuple(calls.pop(rec.row_key, ())))
    for key, ns in calls.items():  # rows started and not ended
        yield RowSummary(clean(key), None, "started", None,
                         sum(nodes[n - 1].tokens for n in ns), tuple(ns))
