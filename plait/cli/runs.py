"""`plait runs`, `plait show RUN_ID`: the journal from the shell."""

from __future__ import annotations

import datetime

import typer
from rich.console import Console
from rich.table import Table

from plait.cli._app import app
from plait.cli._journal import HELP as JOURNAL_HELP
from plait.cli._journal import journal_option
from plait.cli._journal import open_existing as _open
from plait.journal import Journal, JournalState


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command("runs")
def runs_command(
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
    limit: int = typer.Option(50, help="most runs to list, newest first"),
) -> None:
    """List the runs in a journal: status, duration, tokens.

    A run marked running whose owner is gone (its lease expired, or its process
    on this host no longer exists: killed, say) shows as crashed."""
    j = _open(journal)
    try:
        records = j.list_runs(limit=limit)
        crashed = {r.run_id for r in records if r.status == "running" and _crashed(j, r.run_id)}
    finally:
        j.close()
    table = Table("run", "entry", "status", "started", "duration", "tokens", "error")
    for r in records:
        end = r.finished_at or r.updated_at
        table.add_row(
            r.run_id,
            r.entry,
            "crashed" if r.run_id in crashed else r.status,
            _when(r.created_at),
            f"{end - r.created_at:.3f}s" if end else "-",
            str(r.tokens),
            (r.error or "")[:60],
        )
    console = Console()
    console.print(table)
    same = "" if journal == journal_option() else " (with the same --journal)"
    for r in records:
        if r.run_id in crashed:
            console.print(f"crashed: {r.run_id} stopped without ending (its owner is gone); "
                          f"continue it with: plait resume {r.run_id}{same}", soft_wrap=True)


def _crashed(j: Journal, run_id: str) -> bool:
    """A running run nobody owns alive (no lease, a stale one, or a dead owner)."""
    lease = j.get_lease(run_id)
    return lease is None or not lease.alive()


@app.command("show")
def show_command(
    run_id: str = typer.Argument(..., help="a run id from `plait runs`"),
    journal: str = typer.Option(journal_option, "--journal", "-j", help=JOURNAL_HELP),
) -> None:
    """Every node of a run: state, timings, tokens, error."""
    j = _open(journal)
    try:
        state = j.load(run_id)
    finally:
        j.close()
    _show(state)


def _show(state: JournalState) -> None:
    run = state.run
    console = Console()
    console.print(f"run {run.run_id}  {run.entry}  {run.status}  tokens {run.tokens}")
    if run.error:
        console.print(f"error: {run.error}")
    t0 = min((i.started_at for i in state.intents.values()), default=run.created_at)
    table = Table("key", "tool", "state", "attempt", "start", "duration", "tokens", "error")
    doubt = set(state.in_doubt)
    for key, intent in sorted(state.intents.items(), key=lambda kv: kv[1].started_at):
        result = state.results.get(key)
        if result is None:
            status, duration, tokens, error = ("in doubt" if key in doubt else "?"), "-", "-", ""
        else:
            status = "done" if result.ok else "failed"
            duration = f"{result.finished_at - result.started_at:.3f}s"
            tokens = str(result.tokens)
            error = (result.error or "")[:60]
        table.add_row(
            key[:12],
            intent.tool,
            status,
            str(intent.attempt),
            f"+{intent.started_at - t0:.3f}s",
            duration,
            tokens,
            error,
        )
    console.print(table)
