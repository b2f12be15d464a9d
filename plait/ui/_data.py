"""What the pages show, read from the journal: the data of `plait runs --json`
and `plait show --json` (the same functions), bounded for a browser.

A page polls these while a run goes on, so each answer is bounded: a string
longer than `MAX_TEXT` is cut (saying how much was left out), a run's calls come
`MAX_CALLS` at most, and a dataset job's rows a page at a time from the
journal's index (`iter_rows`), never the whole job.
"""

from __future__ import annotations

from typing import Any

from plait.cli._runview import clean, describe_run, is_crashed, list_runs, show_run
from plait.cost import Prices
from plait.journal import Journal, RowRecord, RunNotFoundError

MAX_TEXT = 2000  # characters of a string value shown before it is cut
MAX_CALLS = 5000  # calls of one run in one answer
MAX_ROWS = 500  # rows of a dataset job in one page
ROW_FILTERS = ("all", "done", "dropped", "failed")


def cut_text(value: Any, limit: int = MAX_TEXT) -> Any:
    """`value` with every string longer than `limit` cut, saying how much was."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}… ({len(value) - limit:,} more characters)"
    if isinstance(value, dict):
        return {k: cut_text(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [cut_text(v, limit) for v in value]
    return value


def is_job(entry: str) -> bool:
    return entry.startswith("map:")


def runs(j: Journal, prices: Prices, limit: int,
         cache: dict[tuple[Any, ...], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The runs list: `plait runs --json` (`cache`: see `list_runs`)."""
    listed, _ = list_runs(j, limit, prices, cache)
    return {"journal": clean(j.location), "runs": cut_text(listed, 300)}


def run(j: Journal, run_id: str, prices: Prices) -> dict[str, Any]:
    """A run with its calls (`plait show --json`), or a dataset job with its rows
    counted by status (`plait show JOB --json`'s head)."""
    record = j.get_run(run_id)
    if record is None:
        raise RunNotFoundError(run_id, j.location)
    if is_job(record.entry):
        crashed = record.status == "running" and is_crashed(j, run_id)
        head = describe_run(record, crashed, None)
        counts = j.count_rows(run_id)
        head["rows"] = {k: counts.get(k, 0) for k in ("done", "dropped", "failed")}
        return {"journal": clean(j.location), "kind": "job", "run": head}
    shown = show_run(j, run_id, prices)
    calls = shown["calls"]
    return cut_text({"journal": clean(j.location), "kind": "run", **shown,
                     "calls": calls[:MAX_CALLS], "calls_total": len(calls)})


def rows(j: Journal, run_id: str, status: str, after: int, limit: int) -> dict[str, Any]:
    """One page of a dataset job's rows in source order, after ordinal `after`;
    `next` is the `after` of the next page (None on the last)."""
    if j.get_run(run_id) is None:
        raise RunNotFoundError(run_id, j.location)
    page = j.iter_rows(run_id, status=None if status == "all" else status,  # type: ignore[arg-type]
                       after=after, limit=limit + 1)  # one more: is there a next page?
    more = len(page) > limit
    page = page[:limit]
    return {
        "rows": [_row(r) for r in page],
        "next": page[-1].ordinal if more else None,
    }


def _row(r: RowRecord) -> dict[str, Any]:
    return clean(cut_text({"ordinal": r.ordinal, "key": r.row_key, "status": r.status,
                           "value": r.value, "error": r.error, "tokens": r.tokens,
                           "finished_at": r.finished_at}))
