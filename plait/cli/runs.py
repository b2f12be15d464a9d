"""`plait runs`, `plait show RUN_ID`: the journal from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from plait.cli._app import app
from plait.cli._fail import fail
from plait.cli._journal import HELP as JOURNAL_HELP
from plait.cli._journal import journal_option
from plait.cli._journal import open_existing as _open
from plait.cli._render import render_runs, render_show
from plait.cli._runview import clean, describe_run, list_runs, show_run
from plait.cli._runview import is_crashed as _crashed
from plait.cost import PriceError, Prices, load_prices
from plait.journal import Journal, RowRecord, RunRecord


@app.command("runs")
def runs_command(
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    limit: int = typer.Option(50, help="most runs to list, newest first"),
    as_json: bool = typer.Option(
        False, "--json", help="print the runs as JSON (fields: see docs/durable.md)"
    ),
) -> None:
    """List the runs in a journal: what (the question or the workflow), status,
    start, duration, calls, tokens, cost (prices: see docs/durable.md).

    A run marked running whose owner is gone (its lease expired, or its process
    on this host no longer exists: killed, say) shows as crashed."""
    prices = _prices()
    j = _open(journal)
    try:
        runs, crashed = list_runs(j, limit, prices)
    finally:
        j.close()
    if as_json:
        _print_json({"journal": clean(j.location), "runs": runs})
        return
    console = Console(highlight=False)
    render_runs(console, runs)
    same = "" if journal == journal_option() else " (with the same --journal)"
    for r in runs:
        if r["run_id"] in crashed:
            console.print(f"crashed: {r['run_id']} stopped without ending (its owner is gone); "
                          f"continue it with: plait resume {r['run_id']}{same}",
                          soft_wrap=True, markup=False)


def _prices() -> Prices:
    """The price table, or one `error:` line naming the file and the bad entry."""
    try:
        return load_prices()
    except PriceError as exc:
        fail(str(exc))


@app.command("show")
def show_command(
    run_id: str = typer.Argument(..., help="a run id from `plait runs`"),
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    full: bool = typer.Option(
        False, "--full", help="every argument and value in full, not cut to one line"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="print the run and its calls as JSON, values in full "
        "(fields: see docs/durable.md)"
    ),
    rows: str = typer.Option(
        None, "--rows", metavar="STATUS",
        help="a dataset job's rows: failed | done | dropped | all, in source order",
    ),
    limit: int = typer.Option(1000, min=1, help="with --rows: most rows to list"),
    html: Path = typer.Option(
        None, "--html", metavar="FILE", dir_okay=False,
        help="write the run's timeline to FILE: one self-contained HTML page (docs/timeline.md)",
    ),
) -> None:
    """What happened in a run: every call with its arguments, value or error,
    attempts, timing, tokens and whether it was replayed; for a question, the
    transcript: the question, each plan, each task's value, each decision, the answer;
    for a dataset job, its rows by status (--rows failed lists the failed ones).
    With --html FILE: the run's timeline, one HTML page to open in a browser."""
    prices = _prices()
    j = _open(journal)
    if html is not None:
        try:
            write_timeline(j, run_id, html)
        finally:
            j.close()
        return
    record = j.get_run(run_id)
    if record is not None and (rows is not None or record.entry.startswith("map:")):
        try:
            show_rows(j, record, rows, limit, as_json, full)
        finally:
            j.close()
        return
    if rows is not None:
        j.close()
        raise typer.BadParameter(f"run {run_id} is not a dataset job", param_hint="--rows")
    try:
        shown = show_run(j, run_id, prices)
    finally:
        j.close()
    if as_json:
        _print_json({"journal": clean(j.location), **shown})
        return
    render_show(Console(highlight=False), shown["run"], shown["calls"], shown["question"], full)


def write_timeline(j: Journal, run_id: str, path: Path) -> None:
    """`plait show RUN --html FILE`: the run's timeline page, then the path written."""
    from plait.timeline import build, render_html

    page = render_html(build(j, run_id))
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the timeline to {path}: {exc.strerror or exc}")
    print(path)


ROW_STATUSES = ("failed", "done", "dropped", "all")


def show_rows(j: Journal, record: RunRecord, status: str | None, limit: int, as_json: bool,
              full: bool) -> None:
    """A dataset job: its counts by status, then (with --rows) its rows, read page by
    page in source order (a job of a million rows is never loaded whole)."""
    if status is not None and status not in ROW_STATUSES:
        raise typer.BadParameter(f"must be one of {', '.join(ROW_STATUSES)}",
                                 param_hint="--rows")
    counts = j.count_rows(record.run_id)
    crashed = record.status == "running" and _crashed(j, record.run_id)
    listed: list[RowRecord] = []
    if status is not None:
        after = -1
        while len(listed) < limit:
            want = min(1000, limit - len(listed))
            page = j.iter_rows(record.run_id, status=None if status == "all" else status,
                               after=after, limit=want)
            listed += page
            if len(page) < want:
                break
            after = page[-1].ordinal
    if as_json:
        run = describe_run(record, crashed, None)
        run["rows"] = {k: counts.get(k, 0) for k in ("done", "dropped", "failed")}
        _print_json({"journal": clean(j.location), "run": run, "rows": [
            {"ordinal": r.ordinal, "key": r.row_key,
             "status": r.status, "value": r.value, "error": r.error, "tokens": r.tokens}
            for r in listed]})
        return
    console = Console(highlight=False)
    state = "crashed" if crashed else record.status
    console.print(f"{record.run_id}  {record.entry.removeprefix('map:')}  {state}  rows: "
                  f"{counts.get('done', 0):,} done, {counts.get('dropped', 0):,} dropped, "
                  f"{counts.get('failed', 0):,} failed", soft_wrap=True, markup=False)
    for r in listed:
        text = r.error if r.status == "failed" else json.dumps(r.value, default=str)
        if not full and text is not None and len(text) > 120:
            text = text[:117] + "..."
        console.print(f"  row {r.ordinal}  key {r.row_key}  {r.status}: {text}",
                      soft_wrap=True, markup=False)
    if status is None and counts.get("failed"):
        console.print(f"list the failed rows with: plait show {record.run_id} --rows failed",
                      markup=False)


def _print_json(data: object) -> None:
    # Plain print, not rich: JSON is for programs, and rich would wrap long lines.
    # ASCII-only: valid JSON whatever the model wrote (a lone surrogate, say).
    print(json.dumps(data, indent=2))
